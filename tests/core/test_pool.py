import asyncio

from flowcatalyst.core import BreakerRegistry, BreakerSettings, PoolConfig
from flowcatalyst.core.callback import ACK, DEFER, NACK
from tests.support.engine import Concurrency, Resolutions, fast_mediator, make_pool, pointer


def run(coro):
    return asyncio.run(coro)


def test_immediate_messages_run_concurrently_up_to_the_limit(target):
    hold = Concurrency(0.05)
    target.on("/hold", hold)

    async def go():
        pool, _ = make_pool(concurrency=4)
        res = Resolutions()
        for i in range(20):
            assert pool.submit(res.callback(pointer(target.url("/hold"), "m%d" % i))) is None
        await res.wait(20)
        assert pool.is_idle()
        return res

    res = run(go())
    assert hold.peak == 4
    assert set(res.actions().values()) == {ACK}


def test_immediate_permits_follow_submission_order(target):
    hold = Concurrency(0.02)
    target.on("/hold", hold)

    async def go():
        pool, _ = make_pool(concurrency=1)
        res = Resolutions()
        for i in range(10):
            pool.submit(res.callback(pointer(target.url("/hold"), "m%d" % i)))
        await res.wait(10)

    run(go())
    assert hold.order == ["m%d" % i for i in range(10)]


def test_groups_keep_fifo_and_run_in_parallel(target):
    hold = Concurrency(0.02)
    target.on("/hold", hold)

    async def go():
        pool, _ = make_pool(concurrency=10)
        res = Resolutions()
        for i in range(10):
            for g in ("a", "b", "c"):
                pool.submit(res.callback(pointer(target.url("/hold"), "%s%d" % (g, i), group=g, mode="BLOCK_ON_ERROR")))
        assert len(pool.groups) == 3
        await res.wait(30)
        assert len(pool.groups) == 0

    run(go())
    for g in "abc":
        assert [m for m in hold.order if m[0] == g] == ["%s%d" % (g, i) for i in range(10)]
    assert hold.peak == 3  # one per group, groups in parallel


def test_high_priority_goes_first_within_its_group(target):
    hold = Concurrency(0.05)
    target.on("/hold", hold)

    async def go():
        pool, _ = make_pool(concurrency=5)
        res = Resolutions()
        for i in range(3):
            pool.submit(res.callback(pointer(target.url("/hold"), "n%d" % i, group="g", mode="NEXT_ON_ERROR")))
        await asyncio.sleep(0.02)  # n0 is being delivered
        pool.submit(res.callback(pointer(target.url("/hold"), "urgent", group="g", mode="NEXT_ON_ERROR", highPriority=True)))
        await res.wait(4)

    run(go())
    assert hold.order == ["n0", "urgent", "n1", "n2"]  # n0 was already on its way


def test_block_on_error_defers_the_rest_of_its_batch_and_group(target):
    async def go():
        pool, observer = make_pool(concurrency=4)
        res = Resolutions()
        pool.submit(res.callback(pointer(target.url("/status/500"), "m1", group="g", mode="BLOCK_ON_ERROR"), batch_id=1))
        pool.submit(res.callback(pointer(target.url("/ok"), "m2", group="g", mode="BLOCK_ON_ERROR"), batch_id=1))
        pool.submit(res.callback(pointer(target.url("/ok"), "m3", group="g", mode="BLOCK_ON_ERROR"), batch_id=1))
        pool.submit(res.callback(pointer(target.url("/ok"), "other", group="h", mode="BLOCK_ON_ERROR"), batch_id=1))
        pool.submit(res.callback(pointer(target.url("/ok"), "m4", group="g", mode="BLOCK_ON_ERROR"), batch_id=2))
        await res.wait(5)
        return res

    res = run(go())
    assert res.of("m1") == [("m1", NACK, 30, "HTTP 500: Server error")]
    assert res.of("m2")[0][1:3] == (DEFER, 10)
    assert res.of("m3")[0][1:3] == (DEFER, 10)
    assert res.of("other")[0][1] == ACK
    assert res.of("m4")[0][1] == ACK  # a later batch is not part of the cascade
    paths = [r.path for r in target.received()]
    assert paths.count("/status/500") == 1 and paths.count("/ok") == 2


def test_next_on_error_lets_the_group_go_on(target):
    async def go():
        pool, _ = make_pool()
        res = Resolutions()
        pool.submit(res.callback(pointer(target.url("/status/503"), "m1", group="g", mode="NEXT_ON_ERROR"), batch_id=1))
        pool.submit(res.callback(pointer(target.url("/ok"), "m2", group="g", mode="NEXT_ON_ERROR"), batch_id=1))
        pool.submit(res.callback(pointer(target.url("/ok"), "m3", group="g", mode="NEXT_ON_ERROR"), batch_id=1))
        await res.wait(3)
        return res

    res = run(go())
    assert res.actions() == {"m1": NACK, "m2": ACK, "m3": ACK}
    assert [r.json()["messageId"] for r in target.received()] == ["m1", "m2", "m3"]


def test_outcomes_map_to_queue_actions(target):
    async def go():
        pool, observer = make_pool()
        res = Resolutions()
        cases = {
            "ok": "/ok",
            "gone": "/status/404",
            "slow-down": "/status/429?retry_after=7",
            "later": "/ackfalse?delay=12",
            "broken": "/status/500",
        }
        for mid, path in cases.items():
            pool.submit(res.callback(pointer(target.url(path), mid)))
        await res.wait(len(cases))
        return res, observer

    res, observer = run(go())
    assert res.of("ok")[0][1] == ACK
    assert res.of("gone")[0][1] == ACK  # a config error is dropped, not retried
    assert res.of("slow-down")[0][1:3] == (NACK, 7)
    assert res.of("later")[0][1:3] == (NACK, 12)
    assert res.of("broken")[0][1:3] == (NACK, 30)
    warnings = {mid: o.warning for mid, o in observer.outcomes}
    assert warnings["gone"] == "ERROR" and warnings["ok"] is None


def test_open_breaker_defers_without_calling_the_target(target):
    async def go():
        breakers = BreakerRegistry(BreakerSettings(min_calls=3, reset_timeout=60))
        pool, _ = make_pool(concurrency=1, breakers=breakers)
        res = Resolutions()
        url = target.url("/status/500")
        for i in range(3):
            pool.submit(res.callback(pointer(url, "f%d" % i)))
        await res.wait(3)
        assert breakers.get(url).state == "OPEN"
        pool.submit(res.callback(pointer(url, "blocked")))
        await res.wait(4)
        return res

    res = run(go())
    assert res.of("blocked")[0][1:3] == (DEFER, 5)
    assert len(target.received()) == 3


def test_breakers_are_shared_between_pools(target):
    async def go():
        breakers = BreakerRegistry(BreakerSettings(min_calls=2, reset_timeout=60))
        a, _ = make_pool("A", breakers=breakers)
        b, _ = make_pool("B", breakers=breakers)
        res = Resolutions()
        url = target.url("/status/502")
        a.submit(res.callback(pointer(url, "a1")))
        a.submit(res.callback(pointer(url, "a2")))
        await res.wait(2)
        b.submit(res.callback(pointer(url, "b1")))
        await res.wait(3)
        return res

    res = run(go())
    assert res.of("b1")[0][1] == DEFER
    assert len(target.received()) == 2


def test_resize_while_busy_applies_in_place(target):
    hold = Concurrency(0.1)
    target.on("/hold", hold)

    async def go():
        pool, _ = make_pool(concurrency=2)
        res = Resolutions()
        for i in range(30):
            pool.submit(res.callback(pointer(target.url("/hold"), "m%d" % i)))
        await asyncio.sleep(0.05)
        assert pool.active_workers == 2
        pool.update(PoolConfig("P", 6))
        await asyncio.sleep(0.05)
        assert pool.active_workers == 6 and hold.peak == 6
        assert pool.capacity == 120
        pool.update(PoolConfig("P", 1))
        await asyncio.sleep(0.25)  # the six in flight finish; only one is admitted after them
        assert pool.active_workers == 1
        await res.wait(30, timeout=10)
        return res

    res = run(go())
    assert len(res.actions()) == 30


def test_capacity_and_drain(target):
    hold = Concurrency(0.2)
    target.on("/hold", hold)

    async def go():
        pool, _ = make_pool(concurrency=1)
        assert pool.capacity == 50
        res = Resolutions()
        results = [pool.submit(res.callback(pointer(target.url("/hold"), "m%d" % i))) for i in range(51)]
        assert results[:50] == [None] * 50 and results[50] == "full"
        pool.drain()
        assert pool.submit(res.callback(pointer(target.url("/hold"), "late"))) == "draining"
        assert pool.available_capacity() == 0
        await pool.cancel()
        return res

    res = run(go())
    # cancel() answers everything that was accepted and not finished
    assert len(res.items) == 50
    assert {a for _, a, _, _ in res.items} <= {ACK, NACK}
    assert all(d == 10 for _, a, d, _ in res.items if a == NACK)


def test_drain_lets_queued_work_finish(target):
    async def go():
        pool, _ = make_pool(concurrency=2)
        res = Resolutions()
        for i in range(6):
            pool.submit(res.callback(pointer(target.url("/ok"), "m%d" % i, group="g", mode="BLOCK_ON_ERROR")))
        pool.drain()
        await res.wait(6)
        assert pool.is_idle()
        return res

    assert set(run(go()).actions().values()) == {ACK}


def test_rate_limit_spaces_deliveries_after_the_burst(target):
    async def go():
        pool, _ = make_pool(concurrency=10, rpm=120)  # burst 120, then 2 per second
        res = Resolutions()
        for i in range(122):
            pool.submit(res.callback(pointer(target.url("/ok"), "m%d" % i)))
        await res.wait(120, timeout=5)
        assert pool.stats()["is_rate_limited"]
        started = asyncio.get_running_loop().time()
        await res.wait(122, timeout=5)
        return asyncio.get_running_loop().time() - started, pool

    elapsed, pool = run(go())
    assert elapsed >= 0.4
    assert pool.metrics.total_rate_limited >= 1


def test_every_callback_is_resolved_exactly_once(target):
    async def go():
        res = Resolutions()
        cb = res.callback(pointer(target.url("/ok"), "x"))
        await cb.ack()
        await cb.nack(5)
        await cb.defer(5)
        assert cb.abandon() is None
        return res

    assert run(go()).items == [("x", ACK, None, None)]


class ExplodingTransport:
    """A transport with a bug: every send raises."""

    async def send(self, *args):
        raise RuntimeError("boom")


def test_a_transport_bug_is_a_retryable_failure_not_a_crash(target):
    from flowcatalyst.core import HttpMediator

    async def go():
        pool, _ = make_pool(mediator=HttpMediator(ExplodingTransport(), max_attempts=1))
        res = Resolutions()
        pool.submit(res.callback(pointer(target.url("/ok"), "a", group="g", mode="BLOCK_ON_ERROR")))
        pool.submit(res.callback(pointer(target.url("/ok"), "b")))
        await res.wait(2)
        assert pool.is_idle()
        return res

    res = run(go())
    assert res.of("a")[0][1:3] == (NACK, 30) and "boom" in res.of("a")[0][3]
    assert res.of("b")[0][1] == NACK


def test_stats_shape(target):
    async def go():
        pool, _ = make_pool(concurrency=3, rpm=600, mediator=fast_mediator())
        res = Resolutions()
        pool.submit(res.callback(pointer(target.url("/ok"), "m")))
        await res.wait(1)
        return pool.stats()

    s = run(go())
    assert s["pool_code"] == "P" and s["concurrency"] == 3 and s["queue_capacity"] == 60
    assert s["rate_limit_per_minute"] == 600 and s["is_rate_limited"] is False
    assert s["metrics"]["totalSuccess"] == 1
    assert set(s["metrics"]) == {"totalSuccess", "totalFailure", "totalRateLimited", "successRate", "processingTime", "last5Min", "last30Min"}
