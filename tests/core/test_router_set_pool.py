"""Router.set_pool: one pool changed in place (the edge's PUT /monitoring/pools/{code})."""

import asyncio

from flowcatalyst.core import MemoryQueue, PoolConfig, QueueConfig, Router, RouterConfig


def run(coro):
    return asyncio.run(coro)


def test_set_pool_resizes_in_place_creates_and_takes_back_draining_pools():
    async def go():
        router = Router(consumer_factory=lambda qc: MemoryQueue(qc.name, wait_seconds=0.05))
        config = RouterConfig([PoolConfig("A", 2), PoolConfig("B", 3)], [QueueConfig("q")])
        await router.start(config)
        a = router.pools["A"]
        assert router.set_pool(PoolConfig("A", 7, 120)) is a
        assert (a.concurrency, a.limiter.rpm) == (7, 120)
        assert router.config is not config  # the caller's object is left alone
        assert config.pool("A").concurrency == 2
        assert router.config.pool("A").concurrency == 7
        assert [p.code for p in router.config.pools] == ["A", "B"]

        c = router.set_pool(PoolConfig("C", 4))
        assert router.pools["C"] is c and c.concurrency == 4
        assert [p.code for p in router.config.pools] == ["A", "B", "C"]

        await router.apply_config(RouterConfig([PoolConfig("A", 7, 120)], [QueueConfig("q")]))
        b = [p for p in router.draining_pools if p.code == "B"]
        assert b and "B" not in router.pools and "C" not in router.pools
        assert router.set_pool(PoolConfig("B", 1)) is b[0]  # taken back while draining
        assert router.pools["B"].running and router.pools["B"].concurrency == 1

        await router.stop()
        assert router.set_pool(PoolConfig("D", 1)) is None

    run(go())
