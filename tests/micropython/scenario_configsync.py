"""Config sync under MicroPython: fetch two config URLs from a real HTTP target, merge them,
apply them to a running Router, then let a periodic sync resize a pool in place.
argv[1] is the target's base URL; the pytest side installs the config handlers."""

import asyncio
import sys

from mpcheck import check, equal, finish, pointer

from flowcatalyst.core import (
    ConfigSync,
    ConfigSyncError,
    HttpClient,
    HttpMediator,
    MemoryQueue,
    PoolConfig,
    Router,
    RouterConfig,
    fetch_config,
    merge_configs,
)
from flowcatalyst.core.compat import monotonic

BASE = sys.argv[1]
A, B = BASE + "/config/a", BASE + "/config/b"
FAST = {"retry_delay": 0.05, "timeout": 5}


async def until(predicate, timeout=10.0):
    deadline = monotonic() + timeout
    while not predicate():
        if monotonic() > deadline:
            return False
        await asyncio.sleep_ms(10)
    return True


async def main():
    merged, conflicts = merge_configs([("a", RouterConfig([PoolConfig("X", 1)])), ("b", RouterConfig([PoolConfig("X", 2)], (), 3))])
    check(merged.pool("X").concurrency == 1 and merged.connections == 3 and len(conflicts) == 1, "merge: first wins, connections max")

    config, conflicts = await fetch_config([A, B], api_key="mp-key", **FAST)
    equal([p.code for p in config.pools], ["P", "Q", "R"], "pools of both URLs, in URL order")
    equal(config.pool("P").concurrency, 2, "the first URL wins a conflict")
    equal(config.connections, 3, "top-level connections is the largest")
    check(len(conflicts) == 1 and A in conflicts[0] and B in conflicts[0], "the conflict names both sources")

    try:
        await fetch_config(BASE + "/status/503", attempts=2, **FAST)
        check(False, "a failing URL raises ConfigSyncError")
    except ConfigSyncError as e:
        equal(e.failures, [(BASE + "/status/503", "HTTP 503: {}")], "the failure and its reason")

    q = MemoryQueue("main", wait_seconds=1)
    router = Router(consumer_factory=lambda qc: q, mediator=HttpMediator(HttpClient(request_timeout=5), max_attempts=1))
    await router.start()
    sync = ConfigSync(A + "," + B, router.apply_config, interval=0.05, warnings=router.warnings, **FAST)
    check(await sync.sync_once(), "the merged config was applied")
    check("R" in router.pools and router.pools["P"].concurrency == 2 and "main" in router.consumers, "pools and queue exist")
    equal(len(router.warnings.list(category="CONFIGURATION")), 1, "the conflict became a warning")
    q.put(pointer(BASE + "/ok", "via-r", pool="R"))
    check(await until(lambda: q.counters["acked"] == 1), "a message went through pool R")
    check(not await sync.sync_once(), "an unchanged config is not applied again")
    await sync.stop()

    changing = ConfigSync(BASE + "/config/changing", router.apply_config, interval=0.05, **FAST)
    await changing.sync_once()
    pool_c = router.pools.get("C")
    check(pool_c is not None and pool_c.concurrency == 2 and "P" not in router.pools, "pools replaced")
    changing.start()
    check(await until(lambda: pool_c.concurrency == 4), "a periodic sync resized pool C in place")
    check(router.pools["C"] is pool_c, "same pool object")
    started = monotonic()
    await changing.stop()
    check(monotonic() - started < 0.5, "stop() is prompt")
    await router.stop()
    finish()


asyncio.run(main())
