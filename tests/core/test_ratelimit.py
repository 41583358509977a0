import asyncio
import time

from flowcatalyst.core import RateLimiter, TokenBucket


def test_bucket_bursts_capacity_then_refills_at_rpm_per_60():
    b = TokenBucket(60, now=0.0)
    assert all(b.try_acquire(0.0) for _ in range(60))
    assert not b.try_acquire(0.0)
    assert b.wait_time(0.0) == 1.0
    assert not b.try_acquire(0.5)
    assert b.try_acquire(1.0)
    assert not b.try_acquire(1.0)


def test_check_does_not_consume():
    b = TokenBucket(1, now=0.0)
    for _ in range(5):
        assert b.check(0.0)
    assert b.try_acquire(0.0)
    assert not b.check(0.0)
    assert b.wait_time(30.0) == 30.0


def test_bucket_never_exceeds_capacity():
    b = TokenBucket(120, now=0.0)
    b.try_acquire(0.0)
    b._refill(10_000.0)
    assert b.tokens == 120.0


def test_unlimited_limiter_never_waits():
    async def go():
        lim = RateLimiter(None)
        return [await lim.acquire() for _ in range(1000)]

    assert not any(asyncio.run(go()))


def test_waiters_are_spaced_at_the_rate():
    async def go():
        lim = RateLimiter(600)  # 10 per second after the burst of 600
        for _ in range(600):
            assert not await lim.acquire()
        assert lim.is_limited()
        started = time.monotonic()
        times = []

        async def one():
            await lim.acquire()
            times.append(time.monotonic() - started)

        await asyncio.gather(*[one() for _ in range(5)])
        return times

    times = asyncio.run(go())
    assert len(times) == 5
    assert times == sorted(times)
    assert times[-1] >= 0.45  # five tokens at 10/s take about 0.5 s
    assert times[-1] < 2.0


def test_raising_the_limit_wakes_a_sleeping_waiter():
    async def go():
        lim = RateLimiter(1)
        await lim.acquire()  # the whole burst of one
        started = time.monotonic()
        waiter = asyncio.create_task(lim.acquire())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        assert lim.update(6000)
        assert await waiter is True
        return time.monotonic() - started

    assert asyncio.run(go()) < 1.0  # not the 60 s the old limit implied


def test_removing_the_limit_releases_waiters():
    async def go():
        lim = RateLimiter(1)
        await lim.acquire()
        waiter = asyncio.create_task(lim.acquire())
        await asyncio.sleep(0.02)
        lim.update(None)
        await asyncio.wait_for(waiter, 1.0)
        return lim.rpm

    assert asyncio.run(go()) is None


def test_update_to_same_value_is_a_no_op():
    lim = RateLimiter(60)
    assert not lim.update(60)
    assert lim.update(0) and lim.rpm is None
