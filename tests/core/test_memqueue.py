"""MemoryQueue (core/memqueue.py): the queue contract (tests/queue_contract.py) bound to it, and
what only MemoryQueue has — `put` (publish without awaiting), `max_messages` / QueueFull, the
`dead_letters` list with its cap and `dead_lettered_total`, `len(q)` and its timer heap."""

import pytest

from flowcatalyst.core.memqueue import MemoryQueue, QueueFull
from flowcatalyst.core.message import IMMEDIATE, MessageError
from flowcatalyst.core.ports import PublishResult
from tests.queue_contract import (
    MODEL_SETTINGS,
    FakeClock,
    QueueContract,
    QueueKind,
    QueueMachine,
    aio,
    ids,
    msg,
    pointer,
    poll,
)


class MemoryQueues(QueueKind):
    name = "memory"
    same_id_in_queue_is_duplicate = False
    dead_lettered_metric = "total"

    def __call__(self, real_clock=False, name="q", **options):
        if not real_clock:
            options.setdefault("clock", FakeClock())
        return MemoryQueue(name, **options)


@pytest.fixture
def make_queue():
    return MemoryQueues()


class TestMemoryQueueContract(QueueContract):
    pass


class MemoryQueueMachine(QueueMachine):
    queues = MemoryQueues


MemoryQueueMachine.TestCase.settings = MODEL_SETTINGS
test_memory_queue_model = MemoryQueueMachine.TestCase


def make(clock=None, **kw):
    return MemoryQueue("q", clock=clock or FakeClock(), **kw)


# -- put: publishing without awaiting ----------------------------------------------------------------


@aio
async def test_put_publishes_without_awaiting():
    q = make()
    result = q.put(pointer("a"))
    assert isinstance(result, PublishResult) and result.accepted
    assert q.put('{"id": "b", "mediationType": "HTTP", "mediationTarget": "http://t.example/"}').accepted
    assert q.put(pointer("a")).status == PublishResult.DUPLICATE
    assert len(q) == 2
    for bad in ({"id": "x"}, "not json", b"[1, 2]"):
        with pytest.raises(MessageError):
            q.put(bad)
    assert len(q) == 2
    assert ids(await poll(q)) == ["a", "b"]


@aio
async def test_queue_full():
    q = make(max_messages=2)
    q.put(msg("a", mode=IMMEDIATE))
    q.put(msg("b", mode=IMMEDIATE))
    with pytest.raises(QueueFull):
        q.put(msg("c", mode=IMMEDIATE))
    with pytest.raises(QueueFull):
        await q.publish(msg("c", mode=IMMEDIATE))
    with pytest.raises(QueueFull):
        await q.publish_batch([(msg("c", mode=IMMEDIATE), None)])
    assert q.put(msg("a", mode=IMMEDIATE)).status == PublishResult.DUPLICATE  # not QueueFull
    assert len(q) == 2
    batch = await poll(q)
    assert len(q) == 2  # in-flight messages still take room
    await q.ack(batch[0].receipt_handle)
    assert q.put(msg("c", mode=IMMEDIATE)).accepted  # refused ids were not remembered
    assert len(q) == 2


# -- the dead-letter list -----------------------------------------------------------------------------


@aio
async def test_dead_letters_list_is_what_the_listener_gets_and_is_capped():
    q = make(max_receive_count=1, max_dead_letters=2)
    seen = []
    q.on_dead_letter = seen.append
    for name in ("a", "b", "c"):
        q.put(msg(name, mode=IMMEDIATE))
        h = (await poll(q))[0].receipt_handle
        await q.nack(h, 0)
    assert [d.message.id for d in q.dead_letters] == ["b", "c"]
    assert seen[1] is q.dead_letters[0] and seen[2] is q.dead_letters[1]
    assert q.dead_lettered_total == 3
    assert (await q.metrics())["dead_lettered"] == 3  # the total, not the list
    assert await q.list_dead_letters() == q.dead_letters
    assert await q.delete_dead_letters() == 2
    assert q.dead_letters == []
    assert q.dead_lettered_total == 3


# -- timers ------------------------------------------------------------------------------------------


@aio
async def test_publishing_behind_a_delayed_head_adds_no_timers():
    clock = FakeClock()
    q = MemoryQueue("q", clock=clock, wait_seconds=0)
    q.put(msg("head", "g"))
    (head,) = await q.poll(1, wait=0)
    await q.nack(head.receipt_handle, 60, "down")
    timers = len(q._timers)
    for i in range(100):
        q.put(msg("m%d" % i, "g"))
    assert len(q._timers) == timers
    clock.advance(61)
    assert [m.message.id for m in await q.poll(3, wait=0)] == ["head", "m0", "m1"]


@aio
async def test_timers_of_answered_messages_do_not_pile_up():
    clock = FakeClock()
    q = MemoryQueue("q", clock=clock, visibility_timeout=120)
    for round in range(50):
        for i in range(20):
            q.put(msg("m%d-%d" % (round, i), mode=IMMEDIATE))
        for m in await q.poll(20, wait=0):
            await q.ack(m.receipt_handle)
    assert len(q) == 0
    assert len(q._timers) <= 2 * len(q._live) + 256 + 1  # 1,000 acked messages, bounded timers
