import asyncio
import json
import time

from flowcatalyst.core import MemoryQueue, PoolConfig, QueueConfig, RouterConfig
from flowcatalyst.core.config import DEFAULT_POOL_CODE
from tests.support.engine import (
    Concurrency,
    FailFirst,
    fast_mediator,
    pointer,
    router_with_queues,
    wait_until,
)


def run(coro):
    return asyncio.run(coro)


def ids(requests):
    return [json.loads(r.body)["messageId"] for r in requests]


def test_block_on_error_keeps_group_order_through_retries(target):
    flaky = FailFirst({"g1-2": 2, "g0-5": 1})
    target.on("/flaky", flaky)

    async def go():
        q = MemoryQueue("main", wait_seconds=1)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 8)], cascade_delay=0)
        for i in range(8):
            for g in range(3):
                q.put(pointer(target.url("/flaky"), "g%d-%d" % (g, i), group="g%d" % g, mode="BLOCK_ON_ERROR"))
        await router.start(config)
        await wait_until(lambda: len(q) == 0 and router.is_idle())
        await router.stop()
        return q

    q = run(go())
    assert q.counters["acked"] == 24 and not q.dead_letters
    for g in range(3):
        seq = [m for m in flaky.order if m.startswith("g%d-" % g)]
        delivered = [m for i, m in enumerate(seq) if m not in seq[i + 1 :]]  # last try of each
        assert delivered == ["g%d-%d" % (g, i) for i in range(8)]
    g1 = [m for m in flaky.order if m.startswith("g1-")]
    assert g1[:5] == ["g1-0", "g1-1", "g1-2", "g1-2", "g1-2"]  # nothing overtook the failing message


def test_next_on_error_sets_the_failure_aside(target):
    flaky = FailFirst({"m1": 1}, delay=1)
    target.on("/flaky", flaky)

    async def go():
        q = MemoryQueue("main", wait_seconds=1)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 4)])
        for i in range(1, 4):
            q.put(pointer(target.url("/flaky"), "m%d" % i, group="g", mode="NEXT_ON_ERROR"))
        await router.start(config)
        await wait_until(lambda: flaky.order[-3:] == ["m2", "m3", "m1"] if len(flaky.order) >= 4 else False, timeout=5)
        await wait_until(lambda: len(q) == 0)
        await router.stop()

    run(go())
    assert flaky.order == ["m1", "m2", "m3", "m1"]


def test_groups_are_delivered_in_parallel(target):
    hold = Concurrency(0.1)
    target.on("/hold", hold)

    async def go():
        q = MemoryQueue("main", wait_seconds=1)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 20)])
        for i in range(2):
            for g in range(5):
                q.put(pointer(target.url("/hold"), "g%d-%d" % (g, i), group="g%d" % g, mode="BLOCK_ON_ERROR"))
        await router.start(config)
        started = time.monotonic()
        await wait_until(lambda: len(q) == 0)
        elapsed = time.monotonic() - started
        await router.stop()
        return elapsed

    elapsed = run(go())
    assert hold.peak == 5
    assert elapsed < 0.9  # ten 0.1 s deliveries, two per group, five groups side by side


def test_a_redelivery_while_in_flight_is_absorbed(target):
    async def slow(rec):
        await asyncio.sleep(1.6)
        return 200, {}, {"ack": True}

    target.on("/slow", slow)

    async def go():
        q = MemoryQueue("main", visibility_timeout=1, wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 4)])
        q.put(pointer(target.url("/slow"), "m1"))
        await router.start(config)
        await wait_until(lambda: q.counters["received"] >= 2, timeout=3)  # the queue handed it out again
        await wait_until(lambda: len(q) == 0, timeout=3)
        await router.stop()
        return q

    q = run(go())
    assert len(target.received("/slow")) == 1
    assert q.counters["acked"] == 1 and not q.dead_letters  # acked with the newest receipt handle


def test_an_external_requeue_is_deleted_not_delivered(target):
    async def slow(rec):
        await asyncio.sleep(0.4)
        return 200, {}, {"ack": True}

    target.on("/slow", slow)

    async def go():
        q = MemoryQueue("main", wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 4)])
        q.put(pointer(target.url("/slow"), "job-1"))
        await router.start(config)
        await wait_until(lambda: len(target.received("/slow")) == 1)
        assert q.put(pointer(target.url("/slow"), "job-1"), dedup_id="requeue-1").accepted
        await wait_until(lambda: len(q) == 0)
        await asyncio.sleep(0.1)
        await router.stop()
        return q

    q = run(go())
    assert len(target.received("/slow")) == 1
    assert q.counters["acked"] == 2


def test_same_message_twice_in_one_batch_is_delivered_once(target):
    async def go():
        q = MemoryQueue("main", dedup_window=0, wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 4)])
        q.put(pointer(target.url("/slow/200"), "dup"))
        q.put(pointer(target.url("/slow/200"), "dup"))
        await router.start(config)
        await wait_until(lambda: len(q) == 0)
        await router.stop()

    run(go())
    assert len(target.received("/slow/200")) == 1


def test_unknown_pool_goes_to_default_pool_with_one_warning(target):
    async def go():
        q = MemoryQueue("main", wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 2)])
        for i in range(5):
            q.put(pointer(target.url("/ok"), "m%d" % i, pool="NOPE"))
        await router.start(config)
        await wait_until(lambda: len(q) == 0)
        await router.stop()
        return router

    router = run(go())
    assert DEFAULT_POOL_CODE in router.pools
    routing = router.warnings.list(category="ROUTING")
    assert len(routing) == 1 and "No pool found for code [NOPE]" in routing[0].message
    assert len(target.received("/ok")) == 5


def test_config_changes_apply_in_place(target):
    hold = Concurrency(0.2)
    target.on("/hold", hold)

    async def go():
        q1 = MemoryQueue("one", wait_seconds=0.2)
        q2 = MemoryQueue("two", wait_seconds=0.2)
        queues = {"one": q1, "two": q2}
        router, config = router_with_queues({"one": q1}, [PoolConfig("A", 2), PoolConfig("B", 1)], housekeeping_interval=0.05)
        router.consumer_factory = lambda qc: queues[qc.name]
        await router.start(config)
        pool_a = router.pools["A"]
        unchanged = await router.apply_config(config)
        assert unchanged == {"pools_created": 0, "pools_updated": 0, "pools_removed": 0, "queues_started": 0, "queues_stopped": 0}

        for i in range(4):
            q1.put(pointer(target.url("/hold"), "b%d" % i, pool="B"))
        await wait_until(lambda: hold.current == 1)
        new = RouterConfig(
            [PoolConfig("A", 5, 600), PoolConfig("C", 3)],
            [QueueConfig("memory://two", "two")],
        )
        summary = await router.apply_config(new)
        assert summary == {"pools_created": 1, "pools_updated": 1, "pools_removed": 1, "queues_started": 1, "queues_stopped": 1}
        assert router.pools["A"] is pool_a and pool_a.concurrency == 5 and pool_a.limiter.rpm == 600
        assert "B" not in router.pools and [p.code for p in router.draining_pools] == ["B"]
        assert set(router.consumers) == {"two"}
        # the removed pool finishes what it had, then disappears
        await wait_until(lambda: not router.draining_pools, timeout=5)
        q2.put(pointer(target.url("/ok"), "via-two", pool="C"))
        await wait_until(lambda: len(q2) == 0)
        await router.stop()
        return q1

    q1 = run(go())
    assert q1.counters["acked"] >= 1  # what pool B held when it was removed was delivered
    assert len(target.received("/ok")) == 1


def test_graceful_stop_waits_for_in_flight_deliveries(target):
    hold = Concurrency(0.3)
    target.on("/hold", hold)

    async def go():
        q = MemoryQueue("main", wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 10)])
        for i in range(10):
            q.put(pointer(target.url("/hold"), "m%d" % i))
        await router.start(config)
        await wait_until(lambda: hold.current == 10)
        await router.stop(timeout=5)
        return q

    q = run(go())
    assert q.counters["acked"] == 10 and len(q) == 0


def test_stop_timeout_nacks_what_is_left(target):
    async def stuck(rec):
        await asyncio.sleep(5)
        return 200, {}, {"ack": True}

    target.on("/stuck", stuck)

    async def go():
        q = MemoryQueue("main", wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 2)])
        for i in range(3):
            q.put(pointer(target.url("/stuck"), "m%d" % i))
        await router.start(config)
        await wait_until(lambda: len(target.received("/stuck")) == 2)
        started = time.monotonic()
        await router.stop(timeout=0.2)
        return q, time.monotonic() - started

    q, took = run(go())
    assert took < 2
    assert len(q) == 3 and q.counters["nacked"] == 3  # two in flight, one waiting: all back on the queue
    assert (run(q.metrics()))["in_flight"] == 0


class FlakyPollQueue(MemoryQueue):
    """A queue whose first two polls fail, as a broker outage would."""

    failures = 2

    async def poll(self, max_messages=10, wait=None):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unavailable")
        return await MemoryQueue.poll(self, max_messages, wait)


def test_poll_errors_do_not_stop_the_loop(target):
    async def go():
        q = FlakyPollQueue("main", wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 2)], error_wait=0.05)
        q.put(pointer(target.url("/ok"), "m1"))
        await router.start(config)
        await wait_until(lambda: len(q) == 0)
        await router.stop()
        return router

    router = run(go())
    assert router.metrics.errors.get(("main", "ConnectionError")) == 2


class FirstAckFails(MemoryQueue):
    acks_to_fail = 1

    async def ack(self, handle):
        if self.acks_to_fail:
            self.acks_to_fail -= 1
            raise ConnectionError("ack lost")
        return await MemoryQueue.ack(self, handle)


def test_a_failed_ack_deletes_the_redelivery_instead_of_processing_it_again(target):
    async def go():
        q = FirstAckFails("main", visibility_timeout=1, wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 2)])
        q.put(pointer(target.url("/ok"), "m1"))
        await router.start(config)
        await wait_until(lambda: len(q) == 0, timeout=4)
        await router.stop()
        return q

    q = run(go())
    assert len(target.received("/ok")) == 1
    assert q.counters["received"] == 2 and q.counters["acked"] == 1


def test_a_full_pool_pauses_polling_instead_of_deferring(target):
    hold = Concurrency(0.005)
    target.on("/hold", hold)

    async def go():
        q = MemoryQueue("main", wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 1)])
        for i in range(300):
            q.put(pointer(target.url("/hold"), "m%d" % i))
        await router.start(config)
        await wait_until(lambda: len(q) == 0, timeout=15)
        await router.stop()
        return q

    q = run(go())
    assert q.counters["acked"] == 300 and len(set(hold.order)) == 300
    assert q.counters["deferred"] == 0  # the poll loop waited for room each time the pool filled


def test_a_batch_for_a_full_pool_is_deferred_and_nothing_is_lost(target):
    hold = Concurrency(0.01)
    target.on("/hold", hold)

    async def go():
        q = MemoryQueue("main", wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("A", 1), PoolConfig("B", 5)], full_pool_defer=0.05)
        for i in range(120):
            q.put(pointer(target.url("/hold"), "a%d" % i, pool="A"))
            q.put(pointer(target.url("/ok"), "b%d" % i, pool="B"))
        await router.start(config)
        await wait_until(lambda: len(q) == 0, timeout=20)
        await router.stop()
        return q, router

    q, router = run(go())
    assert q.counters["acked"] == 240 and len(set(hold.order)) == 120
    assert q.counters["deferred"] > 0  # pool B had room, so polling went on while A was full
    assert router.warnings.list(category="QUEUE_HEALTH")


def test_a_message_failing_every_time_is_dead_lettered_and_its_group_goes_on(target):
    flaky = FailFirst({"bad": 100})
    target.on("/flaky", flaky)

    async def go():
        q = MemoryQueue("main", max_receive_count=3, wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 2)], cascade_delay=0)
        q.put(pointer(target.url("/flaky"), "bad", group="g", mode="BLOCK_ON_ERROR"))
        q.put(pointer(target.url("/flaky"), "after", group="g", mode="BLOCK_ON_ERROR"))
        await router.start(config)
        await wait_until(lambda: len(q) == 0)
        await router.stop()
        return q

    q = run(go())
    assert flaky.order == ["bad", "bad", "bad", "after"]
    assert [d.message.id for d in q.dead_letters] == ["bad"]
    assert "ack=false" in q.dead_letters[0].reason


def test_monitoring_views(target):
    async def go():
        q = MemoryQueue("main", wait_seconds=0.2)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 2)])
        q.put(pointer(target.url("/ok"), "ok1"))
        q.put(pointer(target.url("/status/404"), "gone1"))
        q.put(pointer(target.url("/slow/500"), "slow1"))
        await router.start(config)
        await wait_until(lambda: len(router.in_flight()) == 1 and router.in_flight()[0]["messageId"] == "slow1")
        flight = router.in_flight(message_id="SLOW", pool_code="p")
        assert flight[0]["poolCode"] == "P" and flight[0]["queueId"] == "main"
        await wait_until(lambda: len(q) == 0)
        queues = await router.queue_metrics()
        text = router.metrics.render()
        health = router.health()
        stats = router.pool_stats()
        await router.stop()
        return router, queues, text, health, stats

    router, queues, text, health, stats = run(go())
    assert queues["main"]["pending"] == 0
    assert 'fc_messages_processed_total{pool="P",result="SUCCESS",success="true"}' not in text  # label order is pool,success,result
    assert 'fc_messages_processed_total{pool="P",success="true",result="SUCCESS"} 2' in text
    assert 'fc_messages_processed_total{pool="P",success="true",result="ERROR_CONFIG"} 1' in text
    assert 'fc_queue_messages_total{queue="main",outcome="acked"} 3' in text
    assert "fc_mediation_duration_seconds_bucket" in text
    assert health["status"] == "HEALTHY" and health["pools_healthy"] == 1
    assert [w.severity for w in router.warnings.list(category="CONFIGURATION")] == ["ERROR"]
    assert "HTTP 404" in router.warnings.list(category="CONFIGURATION")[0].message
    assert stats[0]["metrics"]["totalSuccess"] == 2


def test_a_consumer_factory_error_is_reported_and_other_queues_run(target):
    from flowcatalyst.core import Router, RouterSettings

    async def go():
        good = MemoryQueue("good", wait_seconds=0.2)

        def factory(qc):
            if qc.name == "bad":
                raise ValueError("unsupported queue URI %r" % qc.uri)
            return good

        router = Router(consumer_factory=factory, mediator=fast_mediator(), settings=RouterSettings())
        config = RouterConfig([PoolConfig("P", 1)], [QueueConfig("weird://x", "bad"), QueueConfig("memory://good", "good")])
        await router.start(config)
        good.put(pointer(target.url("/ok"), "m"))
        await wait_until(lambda: len(good) == 0)
        await router.stop()
        return router

    router = run(go())
    assert set(router.consumers) == {"good"}
    assert "unsupported queue URI" in router.warnings.list(category="CONFIGURATION")[0].message


class StuckQueue(MemoryQueue):
    """A queue whose first poll never returns, as a hung broker call would."""

    hung = True

    async def poll(self, max_messages=10, wait=None):
        if self.hung:
            self.hung = False
            await asyncio.sleep(3600)
        return await MemoryQueue.poll(self, max_messages, wait)


def test_housekeeping_restarts_a_stalled_poll_loop_and_reaps_stale_entries(target):
    async def go():
        q = StuckQueue("main", wait_seconds=0.1)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 2)], consumer_stall=0.2, housekeeping_interval=3600)
        await router.start(config)
        q.put(pointer(target.url("/ok"), "m1"))
        await asyncio.sleep(0.3)
        assert len(q) == 1  # the loop is stuck in its first poll
        now = router.clock()
        await router.housekeeping(now)  # the first tick only starts the job clocks
        await router.housekeeping(now + 31)
        await wait_until(lambda: len(q) == 0)
        assert router.consumers["main"].restarts == 1
        assert "stalled" in router.warnings.list(category="CONSUMER_HEALTH")[0].message

        # an entry nobody answers for 15 minutes is reaped
        from flowcatalyst.core import parse_message
        from flowcatalyst.core.ports import QueuedMessage

        ghost = QueuedMessage(parse_message(pointer(target.url("/ok"), "ghost")), "h", "b-1", "main")
        router.pipeline.track(ghost, "P", 99, now, 0)
        await router.housekeeping(now + 31 + 901)
        assert len(router.pipeline) == 0
        await router.stop()

    run(go())


def test_paused_polling_lets_deliveries_in_flight_finish_and_polls_nothing(target):
    hold = Concurrency(0.3)
    target.on("/hold", hold)

    async def go():
        q = MemoryQueue("main", wait_seconds=0.1)
        router, config = router_with_queues({"main": q}, [PoolConfig("P", 4)])
        q.put(pointer(target.url("/hold"), "first"))
        await router.start(config)
        await wait_until(lambda: hold.current == 1)
        await router.pause_polling()
        received = q.counters["received"]
        q.put(pointer(target.url("/hold"), "later"))
        await asyncio.sleep(0.5)
        assert q.counters["received"] == received  # no poll while paused
        assert q.counters["acked"] == 1  # the one in flight was delivered and acked
        assert router.health()["consumers_unhealthy"] == 0  # paused is not stalled
        router.resume_polling()
        await wait_until(lambda: len(q) == 0)
        await router.stop()

    run(go())
    assert hold.order == ["first", "later"]


def test_a_mediator_per_pool(target):
    from flowcatalyst.core import HttpClient, HttpMediator, Router, RouterSettings

    made = {}

    def per_pool(pool_config):
        made[pool_config.code] = HttpMediator(HttpClient(), max_attempts=1)
        return made[pool_config.code]

    async def go():
        q = MemoryQueue("main", wait_seconds=0.1)
        router = Router(consumer_factory=lambda qc: q, mediator_factory=per_pool, settings=RouterSettings())
        await router.start(RouterConfig([PoolConfig("A", 1), PoolConfig("B", 1)], [QueueConfig("memory://main", "main")]))
        q.put(pointer(target.url("/ok"), "a", pool="A"))
        q.put(pointer(target.url("/ok"), "b", pool="B"))
        await wait_until(lambda: len(q) == 0)
        assert router.pools["A"].mediator is made["A"] and router.pools["B"].mediator is made["B"]
        assert made["A"].transport.connections_opened == 1 and made["B"].transport.connections_opened == 1
        await router.stop()
        assert not made["A"].transport._idle  # closed with the router

    run(go())


class SlowDeferQueue(MemoryQueue):
    """Defers take a while, so a batch is still being routed when polling is paused."""

    async def defer(self, handle, delay=None):
        await asyncio.sleep(0.2)
        return await MemoryQueue.defer(self, handle, delay)


def test_pause_lets_a_batch_being_routed_finish(target):
    hold = Concurrency(1.0)
    target.on("/hold", hold)

    async def go():
        q = SlowDeferQueue("main", wait_seconds=0.1)
        router, config = router_with_queues({"main": q}, [PoolConfig("FULL", 1), PoolConfig("ROOMY", 5)], full_pool_defer=30)
        for i in range(55):  # one delivering, 49 queued (capacity 50): the last batch of 5 has no room
            q.put(pointer(target.url("/hold"), "f%d" % i, pool="FULL"))
        await router.start(config)
        await wait_until(lambda: router.consumers["main"].routing and q.counters["received"] == 55, timeout=5)
        await router.pause_polling()
        assert not router.consumers["main"].routing
        assert q.counters["deferred"] == 5  # the batch was routed to the end: nothing stranded in flight
        assert (await q.metrics())["delayed"] == 5
        await router.stop(timeout=0.1)

    run(go())


def test_a_removed_pools_own_mediator_is_closed_when_it_has_drained(target):
    from flowcatalyst.core import HttpClient, HttpMediator, Router, RouterSettings

    made = {}

    def per_pool(pool_config):
        made[pool_config.code] = HttpMediator(HttpClient(), max_attempts=1)
        return made[pool_config.code]

    async def go():
        q = MemoryQueue("main", wait_seconds=0.1)
        router = Router(consumer_factory=lambda qc: q, mediator_factory=per_pool, settings=RouterSettings())
        queues = [QueueConfig("memory://main", "main")]
        await router.start(RouterConfig([PoolConfig("A", 1), PoolConfig("B", 1)], queues))
        q.put(pointer(target.url("/ok"), "b", pool="B"))
        await wait_until(lambda: len(q) == 0)
        assert made["B"].transport._idle  # a kept-alive connection
        await router.apply_config(RouterConfig([PoolConfig("A", 1)], queues))
        await router.housekeeping()
        assert not made["B"].transport._idle and made["B"] not in router._pool_mediators
        assert made["A"] in router._pool_mediators
        await router.stop()

    run(go())
