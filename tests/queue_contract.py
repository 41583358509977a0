"""The behavioural contract of the local queues (QueueConsumer + QueuePublisher, core/ports.py):
one suite, run for every implementation.

A module binds it by subclassing `QueueContract` (its tests become that class's tests) and
defining a `make_queue` fixture: `make_queue(real_clock=False, name="q", **options)` returns a
fresh queue whose `clock` is a `FakeClock` (advanced by hand; polls use `wait=0`, so they never
sleep), or which runs on the real clock with `real_clock=True` (the wake-up tests). The fixture
object also states where an implementation differs on purpose (see `QueueKind`); tests that
touch such a difference say so. A binding module also gets the random-walk model by
subclassing `QueueMachine` with its `queues` factory.

    tests/core/test_memqueue.py              MemoryQueue
    tests/edge/test_sqlitequeue_contract.py  SqliteQueue on a real database file
"""

import asyncio
import functools
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flowcatalyst.core.memqueue import DeadLetter
from flowcatalyst.core.message import (
    BLOCK_ON_ERROR,
    IMMEDIATE,
    NEXT_ON_ERROR,
    Message,
    MessageError,
)
from flowcatalyst.core.ports import ConsumerStopped, PublishResult, ReceiptHandleError

TARGET = "http://target.example/hook"


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds


class QueueKind:
    """What a `make_queue` factory states about its queues: the deliberate differences.

    same_id_in_queue_is_duplicate
        Publishing a message whose id is still in the queue is a DUPLICATE even under another
        deduplication id (or with deduplication off), and a dead letter whose id is queued
        again is not replayed. SqliteQueue: yes (one row per id); MemoryQueue: no (the
        deduplication id alone decides, so two copies can be queued).
    dead_lettered_metric
        What metrics()["dead_lettered"] counts: "total" — every dead-lettering since the queue
        started (MemoryQueue; its list is capped at max_dead_letters) — or "stored" — the dead
        letters held now (SqliteQueue; replay and delete lower it, and it survives restarts).
    """

    name = "?"
    same_id_in_queue_is_duplicate = False
    dead_lettered_metric = "total"

    def __call__(self, real_clock=False, name="q", **options):
        raise NotImplementedError

    def close(self):
        pass


def aio(fn):
    """Run an async test body with plain asyncio.run (pytest-asyncio is not used)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


def msg(id, group=None, mode=BLOCK_ON_ERROR):
    return Message(id, TARGET, message_group_id=group, dispatch_mode=mode)


def pointer(id, group=None, mode=None):
    d = {"id": id, "mediationType": "HTTP", "mediationTarget": TARGET}
    if group is not None:
        d["messageGroupId"] = group
    if mode is not None:
        d["dispatchMode"] = mode
    return d


async def poll(q, n=10):
    """A non-waiting poll."""
    return await q.poll(n, wait=0)


def ids(batch):
    return [m.message.id for m in batch]


async def ack_all(q, batch):
    for m in batch:
        await q.ack(m.receipt_handle)


async def dead_ids(q):
    return [d.message.id for d in await q.list_dead_letters(1000)]


async def _timed(coro):
    start = time.monotonic()
    result = await asyncio.wait_for(coro, 2.0)
    return result, time.monotonic() - start


class QueueContract:
    """Port-level behaviour every local queue has. Needs a `make_queue` fixture (QueueKind)."""

    # -- publish / poll / ack ---------------------------------------------------------------------------

    @aio
    async def test_publish_poll_ack_round_trip(self, make_queue):
        q = make_queue()
        result = await q.publish(pointer("m1", mode=IMMEDIATE))
        assert isinstance(result, PublishResult)
        assert result.accepted and result.status == PublishResult.ACCEPTED and result.message_id == "m1"
        assert await q.size() == 1

        batch = await poll(q)
        assert ids(batch) == ["m1"]
        got = batch[0]
        assert got.message.mediation_target == TARGET
        assert got.queue_identifier == "q"
        assert got.receive_count == 1
        assert got.receipt_handle and got.broker_message_id
        assert await poll(q) == []  # in flight: not returned again

        await q.ack(got.receipt_handle)
        assert await q.size() == 0
        assert await poll(q) == []
        with pytest.raises(ReceiptHandleError):
            await q.ack(got.receipt_handle)
        assert q.counters["published"] == 1
        assert q.counters["received"] == 1
        assert q.counters["acked"] == 1

    @aio
    async def test_publish_accepts_message_dict_json_text_and_bytes(self, make_queue):
        q = make_queue()
        assert (await q.publish(msg("a", mode=IMMEDIATE))).accepted
        assert (await q.publish(pointer("b"))).accepted
        assert (await q.publish('{"id": "c", "mediationType": "HTTP", "mediationTarget": "%s"}' % TARGET)).accepted
        assert (
            await q.publish(b'{"id": "d", "mediationType": "HTTP", "mediationTarget": "%s"}' % TARGET.encode())
        ).accepted
        assert ids(await poll(q)) == ["a", "b", "c", "d"]

    @aio
    async def test_invalid_pointer_raises_and_stores_nothing(self, make_queue):
        q = make_queue()
        for bad in ({"id": "x"}, "not json", b"[1, 2]", pointer("x") | {"mediationTarget": "ftp://h/"}):
            with pytest.raises(MessageError):
                await q.publish(bad)
        with pytest.raises(MessageError):
            await q.publish({"id": "x", "mediationType": "HTTP"})
        assert await q.size() == 0
        assert q.counters["published"] == 0
        assert await poll(q) == []
        # The rejected id was not remembered for deduplication.
        assert (await q.publish(pointer("x"))).accepted
        assert ids(await poll(q)) == ["x"]

    @aio
    async def test_poll_respects_max_messages_and_publish_order(self, make_queue):
        q = make_queue()
        for i in range(5):
            await q.publish(msg("m%d" % i, mode=IMMEDIATE))
        assert ids(await poll(q, 2)) == ["m0", "m1"]
        assert ids(await poll(q, 2)) == ["m2", "m3"]
        assert ids(await poll(q, 10)) == ["m4"]
        assert await poll(q, 10) == []

    @aio
    async def test_broker_message_id_is_stable_and_handles_are_unique_per_receive(self, make_queue):
        q = make_queue(visibility_timeout=10)
        clock = q.clock
        await q.publish(msg("a", mode=IMMEDIATE))
        first = (await poll(q))[0]
        clock.advance(10)
        second = (await poll(q))[0]
        assert second.broker_message_id == first.broker_message_id
        assert second.receipt_handle != first.receipt_handle

    # -- FIFO groups --------------------------------------------------------------------------------------

    @aio
    async def test_fifo_order_within_groups_across_many_polls(self, make_queue):
        q = make_queue()
        expected = {"g": [], "h": []}
        for i in range(20):
            for g in ("g", "h"):
                await q.publish(msg("%s%02d" % (g, i), group=g))
                expected[g].append("%s%02d" % (g, i))
        seen = {"g": [], "h": []}
        for _ in range(100):
            batch = await poll(q, 1)
            if not batch:
                break
            m = batch[0]
            seen[m.message.message_group_id].append(m.message.id)
            await q.ack(m.receipt_handle)
        assert seen == expected
        assert await q.size() == 0

    @aio
    async def test_group_is_held_while_any_message_is_in_flight_but_others_flow(self, make_queue):
        q = make_queue()
        await q.publish(msg("a1", group="g"))
        await q.publish(msg("a2", group="g"))
        await q.publish(msg("b1", group="h"))
        await q.publish(msg("i1", group="g", mode=IMMEDIATE))

        first = await poll(q, 1)
        assert ids(first) == ["a1"]
        # a2 waits while a1 is in flight; group h and the IMMEDIATE message flow.
        second = await poll(q)
        assert ids(second) == ["b1", "i1"]
        assert await poll(q) == []

        await q.publish(msg("a3", group="g"))  # publishing into a held group does not release it
        assert await poll(q) == []

        await q.ack(first[0].receipt_handle)
        assert ids(await poll(q)) == ["a2", "a3"]

    @aio
    async def test_ordered_messages_without_group_id_share_the_default_group(self, make_queue):
        q = make_queue()
        await q.publish(msg("a", mode=NEXT_ON_ERROR))
        await q.publish(msg("b", mode=BLOCK_ON_ERROR))
        first = await poll(q, 1)
        assert ids(first) == ["a"]
        assert await poll(q) == []
        await q.ack(first[0].receipt_handle)
        assert ids(await poll(q)) == ["b"]

    @aio
    async def test_one_poll_returns_consecutive_messages_of_a_group_in_order(self, make_queue):
        q = make_queue()
        for i in range(5):
            await q.publish(msg("g%d" % i, group="g"))
            await q.publish(msg("x%d" % i, group="x%d" % i))
        batch = await poll(q, 10)
        assert sorted(ids(batch)) == sorted(
            ["g%d" % i for i in range(5)] + ["x%d" % i for i in range(5)]
        )
        g_only = [i for i in ids(batch) if i.startswith("g")]
        assert g_only == ["g0", "g1", "g2", "g3", "g4"]

        # While any of them is in flight, a newly published message of the group waits.
        await q.publish(msg("g5", group="g"))
        by_id = {m.message.id: m for m in batch}
        for i in range(4):
            await q.ack(by_id["g%d" % i].receipt_handle)
            assert await poll(q) == []
        await q.ack(by_id["g4"].receipt_handle)
        assert ids(await poll(q)) == ["g5"]

    @aio
    async def test_poll_limit_cuts_a_group_run_and_the_rest_waits(self, make_queue):
        q = make_queue()
        for i in range(5):
            await q.publish(msg("g%d" % i, group="g"))
        first = await poll(q, 3)
        assert ids(first) == ["g0", "g1", "g2"]
        assert await poll(q, 10) == []
        await ack_all(q, first)
        assert ids(await poll(q, 10)) == ["g3", "g4"]

    @aio
    async def test_immediate_messages_with_a_group_id_are_not_held(self, make_queue):
        q = make_queue()
        await q.publish(msg("i1", group="g", mode=IMMEDIATE))
        await q.publish(msg("i2", group="g", mode=IMMEDIATE))
        await q.publish(msg("i3", group="g", mode=IMMEDIATE))
        assert ids(await poll(q, 1)) == ["i1"]
        assert ids(await poll(q, 1)) == ["i2"]
        assert ids(await poll(q, 1)) == ["i3"]

    # -- visibility -----------------------------------------------------------------------------------

    @aio
    async def test_visibility_timeout_expiry_redelivers_and_invalidates_the_old_handle(self, make_queue):
        q = make_queue(visibility_timeout=30)
        clock = q.clock
        await q.publish(msg("a", mode=IMMEDIATE))
        first = (await poll(q))[0]
        clock.advance(29.9)
        assert await poll(q) == []
        clock.advance(0.1)
        again = await poll(q)
        assert ids(again) == ["a"]
        assert again[0].receive_count == 2
        old = first.receipt_handle
        with pytest.raises(ReceiptHandleError):
            await q.ack(old)
        with pytest.raises(ReceiptHandleError):
            await q.nack(old, 0)
        with pytest.raises(ReceiptHandleError):
            await q.defer(old, 0)
        with pytest.raises(ReceiptHandleError):
            await q.extend_visibility(old, 10)
        await q.ack(again[0].receipt_handle)
        assert await q.size() == 0

    @aio
    async def test_expired_group_head_comes_back_before_the_rest_of_its_group(self, make_queue):
        q = make_queue(visibility_timeout=30)
        clock = q.clock
        await q.publish(msg("a1", group="g"))
        await q.publish(msg("a2", group="g"))
        assert ids(await poll(q, 1)) == ["a1"]
        clock.advance(30)
        again = await poll(q, 1)
        assert ids(again) == ["a1"] and again[0].receive_count == 2
        await q.ack(again[0].receipt_handle)
        assert ids(await poll(q)) == ["a2"]

    @aio
    async def test_extend_visibility_longer_and_shorter(self, make_queue):
        q = make_queue(visibility_timeout=30)
        clock = q.clock
        await q.publish(msg("a", mode=IMMEDIATE))
        h = (await poll(q))[0].receipt_handle
        clock.advance(10)
        await q.extend_visibility(h, 100)  # invisible until t0 + 110
        clock.advance(95)
        assert await poll(q) == []
        await q.ack(h)  # the handle is still good
        assert await q.size() == 0

        await q.publish(msg("b", mode=IMMEDIATE))
        h = (await poll(q))[0].receipt_handle
        await q.extend_visibility(h, 5)  # shorter than the queue's timeout
        clock.advance(4.9)
        assert await poll(q) == []
        clock.advance(0.1)
        again = await poll(q)
        assert ids(again) == ["b"] and again[0].receive_count == 2
        with pytest.raises(ReceiptHandleError):
            await q.extend_visibility(h, 10)

    @aio
    async def test_extend_visibility_unknown_handle(self, make_queue):
        q = make_queue()
        with pytest.raises(ReceiptHandleError):
            await q.extend_visibility("q:99:1", 10)

    # -- nack / defer --------------------------------------------------------------------------------

    @aio
    async def test_nack_with_delay_is_invisible_until_the_delay_ends(self, make_queue):
        q = make_queue()
        clock = q.clock
        await q.publish(msg("a", mode=IMMEDIATE))
        h = (await poll(q))[0].receipt_handle
        await q.nack(h, 10, "HTTP 500")
        with pytest.raises(ReceiptHandleError):
            await q.ack(h)
        clock.advance(9.99)
        assert await poll(q) == []
        clock.advance(0.01)
        again = await poll(q)
        assert ids(again) == ["a"] and again[0].receive_count == 2
        assert q.counters["nacked"] == 1

    @aio
    async def test_nack_without_delay_is_visible_at_once(self, make_queue):
        q = make_queue()
        await q.publish(msg("a", mode=IMMEDIATE))
        h = (await poll(q))[0].receipt_handle
        await q.nack(h, None)
        assert ids(await poll(q)) == ["a"]

    @aio
    async def test_block_on_error_nack_keeps_the_group_blocked_until_redelivery(self, make_queue):
        q = make_queue()
        clock = q.clock
        for i in range(3):
            await q.publish(msg("a%d" % i, group="g", mode=BLOCK_ON_ERROR))
        first = await poll(q, 1)
        assert ids(first) == ["a0"]
        await q.nack(first[0].receipt_handle, 10, "HTTP 503")
        await q.publish(msg("b", group="h"))
        await q.publish(msg("i", group="g", mode=IMMEDIATE))
        assert ids(await poll(q)) == ["b", "i"]  # other groups and IMMEDIATE flow
        clock.advance(9)
        assert await poll(q) == []  # a1, a2 wait for a0
        clock.advance(1)
        again = await poll(q)
        assert ids(again) == ["a0", "a1", "a2"]
        assert [m.receive_count for m in again] == [2, 1, 1]

    @aio
    async def test_block_on_error_cascade_nack_of_a_batch_comes_back_in_order(self, make_queue):
        q = make_queue()
        clock = q.clock
        for i in range(3):
            await q.publish(msg("a%d" % i, group="g"))
        batch = await poll(q)
        assert ids(batch) == ["a0", "a1", "a2"]
        # The router nacks the failed head and, later, the rest of the batch (cascade).
        await q.nack(batch[0].receipt_handle, 30, "HTTP 500")
        assert await poll(q) == []  # a1, a2 still in flight
        await q.nack(batch[2].receipt_handle, 10)
        await q.nack(batch[1].receipt_handle, 10)
        clock.advance(10)
        assert await poll(q) == []  # a0 (head) still delayed: a1, a2 wait for it
        clock.advance(20)
        assert ids(await poll(q)) == ["a0", "a1", "a2"]

    @aio
    async def test_a_nacked_message_waits_while_a_later_one_of_its_group_is_in_flight(self, make_queue):
        for mode in (BLOCK_ON_ERROR, NEXT_ON_ERROR):
            q = make_queue()
            await q.publish(msg("a0", group="g", mode=mode))
            await q.publish(msg("a1", group="g", mode=mode))
            batch = await poll(q, 2)
            assert ids(batch) == ["a0", "a1"]
            await q.nack(batch[0].receipt_handle, 0)
            assert await poll(q) == [], mode  # a1 is still in flight: the group is held
            await q.ack(batch[1].receipt_handle)
            assert ids(await poll(q)) == ["a0"], mode

    @aio
    async def test_block_on_error_message_behind_the_head_keeps_its_own_delay(self, make_queue):
        q = make_queue()
        clock = q.clock
        for i in range(3):
            await q.publish(msg("a%d" % i, group="g"))
        batch = await poll(q)
        await q.nack(batch[1].receipt_handle, 10)
        await q.nack(batch[2].receipt_handle, 10)
        await q.nack(batch[0].receipt_handle, 0)
        head = await poll(q)
        assert ids(head) == ["a0"]  # a1 is not visible yet, and a2 must not overtake it
        await q.ack(head[0].receipt_handle)
        assert await poll(q) == []
        clock.advance(10)
        assert ids(await poll(q)) == ["a1", "a2"]

    @aio
    async def test_next_on_error_nack_sets_the_message_aside_and_the_group_goes_on(self, make_queue):
        q = make_queue()
        clock = q.clock
        for i in range(3):
            await q.publish(msg("a%d" % i, group="g", mode=NEXT_ON_ERROR))
        first = await poll(q, 1)
        assert ids(first) == ["a0"]
        await q.nack(first[0].receipt_handle, 10, "HTTP 500")
        rest = await poll(q)
        assert ids(rest) == ["a1", "a2"]
        await ack_all(q, rest)
        clock.advance(9)
        assert await poll(q) == []
        clock.advance(1)
        again = await poll(q)
        assert ids(again) == ["a0"] and again[0].receive_count == 2
        await q.ack(again[0].receipt_handle)
        assert await q.size() == 0

    @aio
    async def test_next_on_error_returning_message_waits_for_in_flight_and_rejoins_in_place(self, make_queue):
        q = make_queue()
        clock = q.clock
        for i in range(3):
            await q.publish(msg("a%d" % i, group="g", mode=NEXT_ON_ERROR))
        first = await poll(q, 1)
        await q.nack(first[0].receipt_handle, 10)
        second = await poll(q, 1)
        assert ids(second) == ["a1"]
        clock.advance(10)
        assert await poll(q) == []  # a0 is back, but a1 is in flight: the group is held
        await q.ack(second[0].receipt_handle)
        assert ids(await poll(q)) == ["a0", "a2"]  # a0 back at its place, ahead of a2

    @aio
    async def test_next_on_error_set_aside_message_does_not_hold_newly_published_ones(self, make_queue):
        q = make_queue()
        clock = q.clock
        await q.publish(msg("a0", group="g", mode=NEXT_ON_ERROR))
        h = (await poll(q))[0].receipt_handle
        await q.nack(h, 60)
        await q.publish(msg("a1", group="g", mode=NEXT_ON_ERROR))
        later = await poll(q)
        assert ids(later) == ["a1"]
        await q.ack(later[0].receipt_handle)
        clock.advance(60)
        assert ids(await poll(q)) == ["a0"]

    @aio
    async def test_next_on_error_nack_without_delay_returns_to_the_head(self, make_queue):
        q = make_queue()
        for i in range(3):
            await q.publish(msg("a%d" % i, group="g", mode=NEXT_ON_ERROR))
        first = await poll(q, 1)
        await q.nack(first[0].receipt_handle, 0)
        assert ids(await poll(q)) == ["a0", "a1", "a2"]

    @aio
    async def test_defer_does_not_count_towards_max_receive_count(self, make_queue):
        q = make_queue(max_receive_count=2)
        await q.publish(msg("a", mode=IMMEDIATE))
        for _ in range(5):
            batch = await poll(q)
            assert ids(batch) == ["a"]
            assert batch[0].receive_count == 1
            await q.defer(batch[0].receipt_handle, 0)
        assert await dead_ids(q) == [] and (await q.metrics())["dead_lettered"] == 0
        assert q.counters["deferred"] == 5
        # Real failures still count: two nacks dead-letter it.
        h = (await poll(q))[0].receipt_handle
        await q.nack(h, 0, "boom")
        h = (await poll(q))[0].receipt_handle
        await q.nack(h, 0, "boom")
        assert await dead_ids(q) == ["a"]

    @aio
    async def test_defer_gives_a_fresh_receipt_handle(self, make_queue):
        q = make_queue()
        await q.publish(msg("a", mode=IMMEDIATE))
        first = (await poll(q))[0]
        await q.defer(first.receipt_handle, 0)
        second = (await poll(q))[0]
        assert second.receipt_handle != first.receipt_handle
        with pytest.raises(ReceiptHandleError):
            await q.ack(first.receipt_handle)
        await q.ack(second.receipt_handle)

    @aio
    async def test_defer_with_delay_holds_the_group_in_both_ordered_modes(self, make_queue):
        for mode in (NEXT_ON_ERROR, BLOCK_ON_ERROR):
            q = make_queue()
            clock = q.clock
            await q.publish(msg("a0", group="g", mode=mode))
            await q.publish(msg("a1", group="g", mode=mode))
            h = (await poll(q, 1))[0].receipt_handle
            await q.defer(h, 5)
            assert await poll(q) == [], mode  # order kept: a1 does not overtake a0
            clock.advance(5)
            assert ids(await poll(q)) == ["a0", "a1"], mode

    # -- dead letters ---------------------------------------------------------------------------------

    @aio
    async def test_dead_letter_after_max_receive_count_via_nack(self, make_queue):
        q = make_queue(max_receive_count=3)
        seen = []
        q.on_dead_letter = seen.append
        await q.publish(msg("a", mode=IMMEDIATE))
        for attempt in range(1, 4):
            batch = await poll(q)
            assert ids(batch) == ["a"] and batch[0].receive_count == attempt
            await q.nack(batch[0].receipt_handle, 0, "HTTP 500 attempt %d" % attempt)
        assert await poll(q) == []
        assert await q.size() == 0
        assert len(seen) == 1
        (listed,) = await q.list_dead_letters()
        for dead in (seen[0], listed):  # what the listener got, and what the queue keeps
            assert isinstance(dead, DeadLetter)
            assert dead.message.id == "a"
            assert dead.receive_count == 3
            assert dead.queue == "q"
            assert "HTTP 500 attempt 3" in dead.reason and "3" in dead.reason
            d = dead.to_dict()
            assert d["messageId"] == "a" and d["queue"] == "q" and d["receiveCount"] == 3
            assert d["reason"] == dead.reason and d["message"]["id"] == "a"
            assert isinstance(d["deadAt"], float)
        assert listed.reason == seen[0].reason
        assert (await q.metrics())["dead_lettered"] == 1

    @aio
    async def test_dead_letter_reason_keeps_the_last_reason_given(self, make_queue):
        q = make_queue(max_receive_count=2)
        await q.publish(msg("a", mode=IMMEDIATE))
        h = (await poll(q))[0].receipt_handle
        await q.nack(h, 0, "HTTP 502")
        h = (await poll(q))[0].receipt_handle
        await q.nack(h, 0)  # no reason this time: the last known one is kept
        assert "HTTP 502" in (await q.list_dead_letters())[0].reason

    @aio
    async def test_dead_letter_after_max_receive_count_via_visibility_expiry(self, make_queue):
        q = make_queue(visibility_timeout=10, max_receive_count=2)
        clock = q.clock
        seen = []
        q.on_dead_letter = seen.append
        await q.publish(msg("a", mode=IMMEDIATE))
        assert (await poll(q))[0].receive_count == 1
        clock.advance(10)
        assert (await poll(q))[0].receive_count == 2
        clock.advance(10)
        assert await poll(q) == []  # the third receive is refused: dead-lettered
        assert [d.message.id for d in seen] == ["a"]
        assert seen[0].receive_count == 2
        assert "visibility timeout expired" in seen[0].reason
        assert await q.size() == 0

    @aio
    async def test_group_continues_after_its_dead_head_via_nack(self, make_queue):
        q = make_queue(max_receive_count=1)
        await q.publish(msg("a0", group="g"))
        await q.publish(msg("a1", group="g"))
        h = (await poll(q, 1))[0].receipt_handle
        await q.nack(h, 60, "HTTP 500")  # the only receive allowed: dead at once, delay ignored
        assert await dead_ids(q) == ["a0"]
        assert ids(await poll(q)) == ["a1"]

    @aio
    async def test_group_continues_after_its_dead_head_via_expiry_in_the_same_poll(self, make_queue):
        q = make_queue(visibility_timeout=10, max_receive_count=1)
        clock = q.clock
        await q.publish(msg("a0", group="g"))
        await q.publish(msg("a1", group="g"))
        await q.publish(msg("a2", group="g"))
        assert ids(await poll(q, 1)) == ["a0"]
        clock.advance(10)
        assert ids(await poll(q)) == ["a1", "a2"]
        assert await dead_ids(q) == ["a0"]

    @aio
    async def test_a_message_out_of_receives_behind_the_head_waits_to_be_the_head(self, make_queue):
        q = make_queue(visibility_timeout=10, max_receive_count=2)
        clock = q.clock
        for i in range(3):
            await q.publish(msg("a%d" % i, group="g"))
        assert ids(await poll(q, 2)) == ["a0", "a1"]
        clock.advance(10)
        a0, a1 = await poll(q, 2)  # both expired once: their second and last receive
        assert (a0.receive_count, a1.receive_count) == (2, 2)
        await q.defer(a0.receipt_handle, 0)  # not an attempt: a0 has a receive left
        clock.advance(10)  # a1 expires on its last receive
        got = await poll(q)
        assert ids(got) == ["a0"]  # a1 is not dead-lettered while a0, ahead of it, is in flight
        assert await dead_ids(q) == []
        await q.ack(got[0].receipt_handle)
        assert ids(await poll(q)) == ["a2"]  # now a1 is the head: dead-lettered, a2 goes
        assert await dead_ids(q) == ["a1"]

    @aio
    async def test_next_on_error_dead_letter_then_group_goes_on(self, make_queue):
        q = make_queue(max_receive_count=2)
        for i in range(2):
            await q.publish(msg("a%d" % i, group="g", mode=NEXT_ON_ERROR))
        h = (await poll(q, 1))[0].receipt_handle
        await q.nack(h, 0, "x")
        again = await poll(q, 1)
        assert ids(again) == ["a0"]
        await q.nack(again[0].receipt_handle, 0, "y")
        assert await dead_ids(q) == ["a0"]
        assert ids(await poll(q)) == ["a1"]

    @aio
    async def test_replay_and_delete_dead_letters(self, make_queue):
        q = make_queue(max_receive_count=1)
        for name in ("a", "b", "c"):
            await q.publish(msg(name, mode=IMMEDIATE))
        for m in await poll(q):
            await q.nack(m.receipt_handle, 0, "fail")
        assert sorted(await dead_ids(q)) == ["a", "b", "c"]
        assert await q.size() == 0

        assert await q.replay_dead_letters(["b"]) == 1
        assert sorted(await dead_ids(q)) == ["a", "c"]
        replayed = await poll(q)
        assert ids(replayed) == ["b"] and replayed[0].receive_count == 1  # fresh receive count
        await q.ack(replayed[0].receipt_handle)

        assert await q.delete_dead_letters(["a", "zzz"]) == 1
        assert await dead_ids(q) == ["c"]
        assert await q.replay_dead_letters() == 1
        assert await dead_ids(q) == []
        assert ids(await poll(q)) == ["c"]
        assert await q.replay_dead_letters() == 0
        assert await q.delete_dead_letters() == 0
        assert q.counters["dead_lettered"] == 3  # every dead-lettering, in both queues
        # metrics: MemoryQueue counts every dead-lettering; SqliteQueue the dead letters it holds.
        expected = 3 if make_queue.dead_lettered_metric == "total" else 0
        assert (await q.metrics())["dead_lettered"] == expected

    @aio
    async def test_replayed_group_message_joins_the_end_of_its_group(self, make_queue):
        q = make_queue(max_receive_count=1)
        await q.publish(msg("a0", group="g"))
        await q.publish(msg("a1", group="g"))
        h = (await poll(q, 1))[0].receipt_handle
        await q.nack(h, 0, "x")
        await q.replay_dead_letters()
        assert ids(await poll(q)) == ["a1", "a0"]

    @aio
    async def test_delete_all_dead_letters(self, make_queue):
        q = make_queue(max_receive_count=1)
        for name in ("a", "b", "c"):
            await q.publish(msg(name, mode=IMMEDIATE))
            h = (await poll(q))[0].receipt_handle
            await q.nack(h, 0)
        assert await dead_ids(q) == ["a", "b", "c"]  # oldest first
        assert await q.delete_dead_letters() == 3
        assert await dead_ids(q) == []
        assert await q.delete_dead_letters(["a"]) == 0

    @aio
    async def test_list_dead_letters_pages_oldest_first(self, make_queue):
        q = make_queue(max_receive_count=1)
        names = ["d%d" % i for i in range(5)]
        for name in names:
            await q.publish(msg(name, mode=IMMEDIATE))
        for m in await poll(q):
            await q.nack(m.receipt_handle, 0, "fail " + m.message.id)
        assert await dead_ids(q) == names
        page = await q.list_dead_letters(2, 1)
        assert [d.message.id for d in page] == ["d1", "d2"]
        assert all(d.reason.endswith("fail " + d.message.id) for d in page)
        assert [d.message.id for d in await q.list_dead_letters(10, 4)] == ["d4"]
        assert await q.list_dead_letters(10, 5) == []

    @aio
    async def test_replayed_message_is_a_new_message_to_the_queue(self, make_queue):
        q = make_queue(max_receive_count=1, dedup_window=60)
        await q.publish(msg("a", group="g"))
        h = (await poll(q))[0].receipt_handle
        await q.nack(h, 0, "x")
        assert await q.replay_dead_letters(["a"]) == 1  # although "a" is within its dedup window
        assert await dead_ids(q) == []
        got = await poll(q)
        assert ids(got) == ["a"] and got[0].receive_count == 1
        await q.ack(got[0].receipt_handle)
        assert await q.size() == 0

    @aio
    async def test_replaying_a_dead_letter_whose_id_is_queued_again(self, make_queue):
        q = make_queue(max_receive_count=1, dedup_window=0)
        await q.publish(msg("a", mode=IMMEDIATE))
        h = (await poll(q))[0].receipt_handle
        await q.nack(h, 0, "x")
        await q.publish(msg("a", mode=IMMEDIATE))  # republished meanwhile
        if make_queue.same_id_in_queue_is_duplicate:
            assert await q.replay_dead_letters() == 0  # one row per id: the dead letter stays
            assert await dead_ids(q) == ["a"]
            assert await q.size() == 1
        else:
            assert await q.replay_dead_letters() == 1  # two copies of "a" now
            assert await dead_ids(q) == []
            assert await q.size() == 2

    # -- deduplication and limits ----------------------------------------------------------------------

    @aio
    async def test_duplicate_within_dedup_window_is_stored_once(self, make_queue):
        q = make_queue(dedup_window=60)
        clock = q.clock
        assert (await q.publish(msg("a", mode=IMMEDIATE))).accepted
        dup = await q.publish(msg("a", mode=IMMEDIATE))
        assert dup.status == PublishResult.DUPLICATE and not dup.accepted and dup.message_id == "a"
        assert await q.size() == 1
        assert q.counters["duplicates"] == 1 and q.counters["published"] == 1
        await ack_all(q, await poll(q))
        clock.advance(59.9)
        assert (await q.publish(msg("a", mode=IMMEDIATE))).status == PublishResult.DUPLICATE  # even once acked
        clock.advance(0.1)
        assert (await q.publish(msg("a", mode=IMMEDIATE))).accepted
        assert ids(await poll(q)) == ["a"]

    @aio
    async def test_dedup_by_explicit_dedup_id(self, make_queue):
        q = make_queue(dedup_window=60)
        assert (await q.publish(msg("a", mode=IMMEDIATE), dedup_id="k1")).accepted
        assert (await q.publish(msg("b", mode=IMMEDIATE), dedup_id="k1")).status == PublishResult.DUPLICATE
        assert (await q.publish(msg("c", mode=IMMEDIATE), "k2")).accepted
        assert (await q.publish(msg("d", mode=IMMEDIATE), "k2")).status == PublishResult.DUPLICATE
        assert ids(await poll(q)) == ["a", "c"]

    @aio
    async def test_same_id_under_another_dedup_id(self, make_queue):
        q = make_queue(dedup_window=60)
        assert (await q.publish(msg("a", mode=IMMEDIATE), dedup_id="k1")).accepted
        again = await q.publish(msg("a", mode=IMMEDIATE), dedup_id="k2")
        if make_queue.same_id_in_queue_is_duplicate:
            assert again.status == PublishResult.DUPLICATE  # "a" is still in the queue
            assert ids(await poll(q)) == ["a"]
        else:
            assert again.accepted
            assert ids(await poll(q)) == ["a", "a"]

    @aio
    async def test_dedup_window_zero_disables_deduplication(self, make_queue):
        q = make_queue(dedup_window=0)
        assert (await q.publish(msg("a", mode=IMMEDIATE))).accepted
        again = await q.publish(msg("a", mode=IMMEDIATE))
        if make_queue.same_id_in_queue_is_duplicate:
            assert again.status == PublishResult.DUPLICATE  # while "a" is in the queue
            assert await q.size() == 1
        else:
            assert again.accepted
            assert await q.size() == 2
        await ack_all(q, await poll(q))
        assert (await q.publish(msg("a", mode=IMMEDIATE))).accepted  # no window: at once again
        assert ids(await poll(q)) == ["a"]

    @aio
    async def test_publish_batch(self, make_queue):
        q = make_queue(dedup_window=60)
        results = await q.publish_batch(
            [
                (msg("a", mode=IMMEDIATE), None),
                (pointer("b", group="g", mode="BLOCK_ON_ERROR"), None),
                (msg("a", mode=IMMEDIATE), None),  # a duplicate within the batch
                (msg("c", mode=IMMEDIATE), "k"),
                (msg("d", mode=IMMEDIATE), "k"),
            ]
        )
        assert [(r.message_id, r.status) for r in results] == [
            ("a", PublishResult.ACCEPTED),
            ("b", PublishResult.ACCEPTED),
            ("a", PublishResult.DUPLICATE),
            ("c", PublishResult.ACCEPTED),
            ("d", PublishResult.DUPLICATE),
        ]
        assert q.counters["published"] == 3 and q.counters["duplicates"] == 2
        assert await q.publish_batch([]) == []
        assert ids(await poll(q)) == ["a", "b", "c"]

    @aio
    async def test_publish_batch_with_one_invalid_pointer_stores_nothing(self, make_queue):
        q = make_queue()
        with pytest.raises(MessageError):
            await q.publish_batch([(pointer("a"), None), ({"id": "b"}, None), (pointer("c"), None)])
        assert await q.size() == 0
        assert q.counters["published"] == 0
        assert (await q.publish(pointer("a"))).accepted  # "a" was not remembered either

    # -- metrics ------------------------------------------------------------------------------------

    @aio
    async def test_metrics_of_an_empty_queue(self, make_queue):
        q = make_queue()
        assert await q.metrics() == {
            "pending": 0,
            "in_flight": 0,
            "delayed": 0,
            "dead_lettered": 0,
            "oldest_pending_age": 0.0,
        }

    @aio
    async def test_metrics_counts_each_state(self, make_queue):
        q = make_queue(max_receive_count=1)
        clock = q.clock
        await q.publish(msg("old", mode=IMMEDIATE))
        clock.advance(5)
        for name in ("fly", "later", "done", "dead"):
            await q.publish(msg(name, group=name))
        clock.advance(2)
        batch = {m.message.id: m for m in await poll(q)}
        assert set(batch) == {"old", "fly", "later", "done", "dead"}
        await q.defer(batch["old"].receipt_handle, 0)  # pending again, published 7 s ago
        await q.defer(batch["later"].receipt_handle, 30)  # delayed
        await q.ack(batch["done"].receipt_handle)  # gone
        await q.nack(batch["dead"].receipt_handle, 0, "boom")  # its one receive: dead-lettered
        assert await q.metrics() == {
            "pending": 1,
            "in_flight": 1,  # fly
            "delayed": 1,
            "dead_lettered": 1,
            "oldest_pending_age": 7.0,
        }
        clock.advance(30)
        m = await q.metrics()
        assert (m["pending"], m["delayed"], m["oldest_pending_age"]) == (2, 0, 37.0)

    @aio
    async def test_metrics_counts_a_set_aside_message_as_delayed(self, make_queue):
        q = make_queue()
        clock = q.clock
        await q.publish(msg("a0", group="g", mode=NEXT_ON_ERROR))
        await q.publish(msg("a1", group="g", mode=NEXT_ON_ERROR))
        h = (await poll(q, 1))[0].receipt_handle
        await q.nack(h, 30)
        assert await q.metrics() == {
            "pending": 1,
            "in_flight": 0,
            "delayed": 1,
            "dead_lettered": 0,
            "oldest_pending_age": 0.0,
        }
        clock.advance(30)
        m = await q.metrics()
        assert (m["pending"], m["delayed"]) == (2, 0)
        assert m["oldest_pending_age"] == 30.0

    @aio
    async def test_metrics_sees_an_expired_visibility_timeout_without_a_poll(self, make_queue):
        q = make_queue(visibility_timeout=10)
        clock = q.clock
        await q.publish(msg("a", mode=IMMEDIATE))
        await poll(q)
        assert (await q.metrics())["in_flight"] == 1
        clock.advance(10)
        m = await q.metrics()
        assert (m["pending"], m["in_flight"]) == (1, 0)

    # -- waiting polls (real clock) ---------------------------------------------------------------------


    @aio
    async def test_waiting_poll_returns_when_nothing_arrives(self, make_queue):
        q = make_queue(real_clock=True)
        batch, took = await _timed(q.poll(10, wait=0.05))
        assert batch == [] and 0.04 <= took < 0.5

    @aio
    async def test_waiting_poll_returns_promptly_on_publish(self, make_queue):
        q = make_queue(real_clock=True, wait_seconds=5)
        task = asyncio.create_task(_timed(q.poll(10)))
        await asyncio.sleep(0.02)
        assert not task.done()
        await q.publish(msg("a", mode=IMMEDIATE))
        batch, took = await task
        assert ids(batch) == ["a"]
        assert took < 0.5

    @aio
    async def test_waiting_poll_ignores_a_publish_into_a_held_group_then_wakes_on_ack(self, make_queue):
        q = make_queue(real_clock=True, wait_seconds=5)
        await q.publish(msg("a0", group="g"))
        first = await q.poll(10, wait=0)
        task = asyncio.create_task(_timed(q.poll(10, wait=1.5)))
        await asyncio.sleep(0.02)
        await q.publish(msg("a1", group="g"))
        await asyncio.sleep(0.05)
        assert not task.done()  # a1 is held behind a0
        await q.ack(first[0].receipt_handle)
        batch, took = await task
        assert ids(batch) == ["a1"] and took < 0.5

    @aio
    async def test_waiting_poll_returns_promptly_when_a_delayed_message_becomes_visible(self, make_queue):
        q = make_queue(real_clock=True, wait_seconds=5)
        await q.publish(msg("a", mode=IMMEDIATE))
        h = (await q.poll(10, wait=0))[0].receipt_handle
        await q.nack(h, 0.1)
        batch, took = await _timed(q.poll(10))
        assert ids(batch) == ["a"]
        assert 0.05 <= took < 0.6

    @aio
    async def test_poll_already_waiting_wakes_for_a_delay_set_after_it_started(self, make_queue):
        q = make_queue(real_clock=True, wait_seconds=5)
        await q.publish(msg("a", mode=IMMEDIATE))
        h = (await q.poll(10, wait=0))[0].receipt_handle
        task = asyncio.create_task(_timed(q.poll(10)))
        await asyncio.sleep(0.02)
        await q.nack(h, 0.1)
        batch, took = await task
        assert ids(batch) == ["a"]
        assert took < 0.6

    @aio
    async def test_waiting_poll_returns_promptly_when_a_visibility_timeout_expires(self, make_queue):
        q = make_queue(real_clock=True, visibility_timeout=0.1, wait_seconds=5)
        await q.publish(msg("a", mode=IMMEDIATE))
        await q.poll(10, wait=0)
        batch, took = await _timed(q.poll(10))
        assert ids(batch) == ["a"] and batch[0].receive_count == 2
        assert took < 0.6

    @aio
    async def test_waiting_poll_wakes_when_a_set_aside_message_returns(self, make_queue):
        q = make_queue(real_clock=True, wait_seconds=5)
        await q.publish(msg("a", group="g", mode=NEXT_ON_ERROR))
        h = (await q.poll(10, wait=0))[0].receipt_handle
        await q.nack(h, 0.1)
        batch, took = await _timed(q.poll(10))
        assert ids(batch) == ["a"]
        assert took < 0.6

    @aio
    async def test_stop_wakes_a_waiting_poll_and_later_polls_raise(self, make_queue):
        q = make_queue(real_clock=True, wait_seconds=5)
        assert q.is_healthy()
        task = asyncio.create_task(_timed(q.poll(10)))
        await asyncio.sleep(0.02)
        start = time.monotonic()
        await q.stop()
        with pytest.raises(ConsumerStopped):
            await task
        assert time.monotonic() - start < 0.5
        assert not q.is_healthy()
        with pytest.raises(ConsumerStopped):
            await q.poll(10, wait=0)



    @aio
    async def test_waiting_poll_wakes_when_a_nack_with_a_delay_frees_its_group(self, make_queue):
        q = make_queue(real_clock=True, wait_seconds=5)
        await q.publish(msg("x", mode=IMMEDIATE))
        await q.nack((await q.poll(1, wait=0))[0].receipt_handle, 1.0)  # due after the rest
        for i in range(2):
            await q.publish(msg("n%d" % i, group="n", mode=NEXT_ON_ERROR))
        for i in range(3):
            await q.publish(msg("b%d" % i, group="b", mode=BLOCK_ON_ERROR))
        batch = await q.poll(10, wait=0)
        assert ids(batch) == ["n0", "n1", "b0", "b1", "b2"]
        n0, n1, b0, b1, b2 = batch
        await q.ack(n1.receipt_handle)
        await q.nack(b0.receipt_handle, 0)  # the BLOCK_ON_ERROR head is visible again, but its
        await q.nack(b1.receipt_handle, 2)  # group stays held until b2 is answered too
        task = asyncio.create_task(_timed(q.poll(10, wait=1.2)))
        await asyncio.sleep(0.05)
        assert not task.done()
        await q.nack(b2.receipt_handle, 2)  # frees group b: b0 can go now
        got, took = await task
        assert ids(got) == ["b0"] and took < 0.5
        task = asyncio.create_task(_timed(q.poll(10, wait=1.2)))
        await asyncio.sleep(0.05)
        await q.publish(msg("n2", group="n", mode=NEXT_ON_ERROR))  # held behind n0
        await asyncio.sleep(0.05)
        assert not task.done()
        await q.nack(n0.receipt_handle, 2)  # set aside: the rest of group n goes on at once
        got, took = await task
        assert ids(got) == ["n2"] and took < 0.5

    @aio
    async def test_poll_for_zero_messages_returns_at_once(self, make_queue):
        q = make_queue(real_clock=True, wait_seconds=30)
        await q.publish(msg("a", mode=IMMEDIATE))
        started = time.monotonic()
        assert await q.poll(0) == []
        assert time.monotonic() - started < 1
        assert ids(await q.poll(1, wait=0)) == ["a"]

    # -- listeners ----------------------------------------------------------------------------------

    @aio
    async def test_a_failing_dead_letter_listener_does_not_abort_the_poll_or_the_nack(self, make_queue):
        q = make_queue(max_receive_count=1, visibility_timeout=10)
        calls = []

        def listener(dead):
            calls.append(dead.message.id)
            raise RuntimeError("listener bug")

        q.on_dead_letter = listener
        await q.publish(msg("a", "g"))
        await q.publish(msg("b", mode=IMMEDIATE))
        await q.publish(msg("c", mode=IMMEDIATE))
        (a, b, c) = await poll(q)
        await q.nack(a.receipt_handle, 0, "boom")  # dead-lettered on its last allowed receive
        assert await dead_ids(q) == ["a"]
        await q.ack(b.receipt_handle)
        q.clock.advance(10)
        await q.publish(msg("d", mode=IMMEDIATE))
        assert ids(await poll(q)) == ["d"]  # c expired on its only receive: dead-lettered
        assert calls == ["a", "c"]
        assert await dead_ids(q) == ["a", "c"]
        assert await q.size() == 1


# -- a random walk against a model ---------------------------------------------------------------

VT = 30  # visibility timeout
MAX_RC = 3  # max receive count
GROUP_MODES = {"gb": BLOCK_ON_ERROR, "gn": NEXT_ON_ERROR, "gm": None}  # gm mixes both modes


class _Model:
    __slots__ = ("id", "group", "mode", "seq", "state", "rc", "handle", "until", "vis", "aside")

    def __init__(self, id, group, mode, seq, now):
        self.id = id
        self.group = group  # None for IMMEDIATE
        self.mode = mode
        self.seq = seq
        self.state = "waiting"  # waiting | in_flight | acked | dead
        self.rc = 0  # receives that count
        self.handle = None
        self.until = None  # end of visibility while in flight
        self.vis = now  # visible from (while waiting)
        self.aside = False  # a NEXT_ON_ERROR nack set it aside until `vis`


class QueueMachine(RuleBasedStateMachine):
    """Random publish / poll / ack / nack / defer / extend / clock steps, checked against a
    model: a group is never delivered out of order or while one of its messages is in flight,
    each delivery is of a message that may be delivered, receive counts add up, stale handles
    are refused, and in the end every message was acked or dead-lettered exactly once.

    Bind it with `class XMachine(QueueMachine): queues = <QueueKind class>` and
    `test_x = XMachine.TestCase`; `queues()` is called once per example."""

    queues = None

    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.kind = type(self).queues()
        self.q = self.kind(visibility_timeout=VT, max_receive_count=MAX_RC, dedup_window=0, name="m")
        self.clock = self.q.clock
        self.dead = []
        self.q.on_dead_letter = self.dead.append
        self.models = {}
        self.order = []  # ids in publish order
        self.handles = []  # every handle ever given out
        self.acked = []

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self):
        try:
            self.drain()
        finally:
            self.loop.close()
            self.kind.close()

    # -- steps --

    @rule(group=st.sampled_from(["gb", "gn", "gm", None]), next_mode=st.booleans())
    def publish(self, group, next_mode):
        if group is None:
            mode = IMMEDIATE  # with a group id that ordered messages use too: never held
        else:
            mode = GROUP_MODES[group] or (NEXT_ON_ERROR if next_mode else BLOCK_ON_ERROR)
        mid = "m%d" % len(self.order)
        result = self.run(self.q.publish(Message(mid, TARGET, message_group_id=group or "gb", dispatch_mode=mode)))
        assert result.accepted
        self.models[mid] = _Model(mid, group, mode, len(self.order), self.clock())
        self.order.append(mid)

    @rule(seconds=st.sampled_from([0.5, 5, 10, 30, 31]))
    def tick(self, seconds):
        self.clock.advance(seconds)

    @rule(limit=st.integers(1, 5))
    def poll(self, limit):
        self._poll(limit)

    @rule(i=st.integers(0, 1000))
    def ack(self, i):
        h, m = self._pick(i)
        if h is None:
            return
        if m is None:
            with pytest.raises(ReceiptHandleError):
                self.run(self.q.ack(h))
            return
        self.run(self.q.ack(h))
        m.state, m.handle = "acked", None
        self.acked.append(m.id)

    @rule(i=st.integers(0, 1000), delay=st.sampled_from([None, 0, 5, 40]), defer=st.booleans())
    def nack(self, i, delay, defer):
        h, m = self._pick(i)
        if h is None:
            return
        if m is None:
            with pytest.raises(ReceiptHandleError):
                self.run(self.q.defer(h, delay) if defer else self.q.nack(h, delay, "r"))
            return
        dead_before = len(self.dead)
        if defer:
            self.run(self.q.defer(h, delay))
            m.rc -= 1
        else:
            self.run(self.q.nack(h, delay, "r"))
        m.handle = None
        if not defer and m.rc >= MAX_RC:
            assert [d.message.id for d in self.dead[dead_before:]] == [m.id]
            m.state = "dead"
            return
        assert len(self.dead) == dead_before
        m.state = "waiting"
        m.vis = self.clock() + (delay or 0)
        m.aside = not defer and m.mode == NEXT_ON_ERROR and m.group is not None

    @rule(i=st.integers(0, 1000), seconds=st.sampled_from([1, 20, 60]))
    def extend(self, i, seconds):
        h, m = self._pick(i)
        if h is None:
            return
        if m is None:
            with pytest.raises(ReceiptHandleError):
                self.run(self.q.extend_visibility(h, seconds))
            return
        self.run(self.q.extend_visibility(h, seconds))
        m.until = self.clock() + seconds

    @rule()
    def drain(self):
        """Let everything become visible and ack whatever comes: nothing is lost."""
        for _ in range(MAX_RC + 3):
            self.clock.advance(1000)
            self._poll(100)
            for m in list(self.models.values()):
                if m.state == "in_flight":
                    self.run(self.q.ack(m.handle))
                    m.state, m.handle = "acked", None
                    self.acked.append(m.id)
            if self.run(self.q.size()) == 0:
                break
        assert self.run(self.q.size()) == 0
        dead = [d.message.id for d in self.dead]
        assert len(set(self.acked)) == len(self.acked)
        assert len(set(dead)) == len(dead)
        assert not set(self.acked) & set(dead)
        assert sorted(self.acked + dead) == sorted(self.order)
        assert sorted(d.message.id for d in self.run(self.q.list_dead_letters(1000))) == sorted(dead)

    # -- checks --

    def _pick(self, i):
        """A handle ever given out (maybe stale) and the message it is valid for, if any."""
        if not self.handles:
            return None, None
        h = self.handles[i % len(self.handles)]
        for m in self.models.values():
            if m.state == "in_flight" and m.handle == h:
                return h, m
        return h, None

    def _poll(self, limit):
        now = self.clock()
        # What the queue does first: visibility timeouts end, set-aside messages return.
        for m in self.models.values():
            if m.state == "in_flight" and m.until <= now:
                m.state, m.handle, m.vis = "waiting", None, m.until
            if m.aside and m.vis <= now:
                m.aside = False
        busy = {m.group for m in self.models.values() if m.state == "in_flight" and m.group}
        expected, doomed = self._claimable(now, busy)
        dead_before = len(self.dead)
        batch = self.run(self.q.poll(limit, wait=0))
        assert len(batch) <= limit
        died = [d.message.id for d in self.dead[dead_before:]]
        for mid in died:
            m = self.models[mid]
            assert m.state == "waiting" and m.rc >= MAX_RC and not m.aside, mid
            m.state = "dead"
        got = [b.message.id for b in batch]
        assert len(set(got)) == len(got)
        assert set(got) <= expected and set(died) <= doomed
        if len(batch) < limit:  # not cut short: everything that could come, came
            assert set(got) == expected and set(died) == doomed
        for b in batch:
            m = self.models[b.message.id]
            assert m.state == "waiting" and not m.aside and m.vis <= now, m.id
            assert m.rc < MAX_RC
            assert b.receive_count == m.rc + 1
            assert b.receipt_handle not in self.handles
            if m.group is None:
                continue
            assert m.group not in busy, "group %s delivered while in flight" % m.group
            for o in self.models.values():
                if o.group == m.group and o.seq < m.seq and o.state == "waiting":
                    # An older live message of the group: delivered earlier in this batch, or
                    # set aside by a NEXT_ON_ERROR nack. Nothing else may be overtaken.
                    assert o.id in got[: got.index(m.id)] or o.aside, (o.id, m.id)
        for b in batch:
            m = self.models[b.message.id]
            m.state, m.rc, m.handle, m.until = "in_flight", m.rc + 1, b.receipt_handle, now + VT
            self.handles.append(b.receipt_handle)

    def _claimable(self, now, busy):
        """What an unlimited poll would return now, and which messages it would dead-letter."""
        out, doomed = set(), set()
        lines = {}
        for m in sorted(self.models.values(), key=lambda m: m.seq):
            if m.state != "waiting":
                continue
            if m.group is None:
                if m.vis <= now:
                    (doomed if m.rc >= MAX_RC else out).add(m.id)
            elif not m.aside and m.group not in busy:
                lines.setdefault(m.group, []).append(m)
        for line in lines.values():
            at_head = True  # the head may be dead-lettered and the next one becomes head
            for m in line:
                if m.vis > now:
                    break
                if m.rc >= MAX_RC:
                    if not at_head:
                        break
                    doomed.add(m.id)
                    continue
                out.add(m.id)
                at_head = False
        return out, doomed

    @invariant()
    def counts_add_up(self):
        live = sum(1 for m in self.models.values() if m.state in ("waiting", "in_flight"))
        assert self.run(self.q.size()) == live
        # Not metrics(): MemoryQueue's would also end visibility timeouts the model ends at polls.
        assert self.q.counters["dead_lettered"] == len(self.dead)


MODEL_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
