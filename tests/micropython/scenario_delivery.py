"""Memory queue → router → real HTTP target, under MicroPython.
argv[1] is the target's base URL; the pytest side checks what the target received."""

import asyncio
import sys

from mpcheck import check, equal, finish, pointer

from flowcatalyst.core import (
    BreakerRegistry,
    BreakerSettings,
    HttpClient,
    HttpMediator,
    MemoryQueue,
    PoolConfig,
    QueueConfig,
    Router,
    RouterConfig,
    RouterSettings,
)
from flowcatalyst.core.compat import monotonic

BASE = sys.argv[1]


async def until(predicate, timeout=10.0):
    deadline = monotonic() + timeout
    while not predicate():
        if monotonic() > deadline:
            return False
        await asyncio.sleep_ms(10)
    return True


async def main():
    q = MemoryQueue("main", wait_seconds=1)
    breakers = BreakerRegistry(BreakerSettings(min_calls=3, reset_timeout=60))
    mediator = HttpMediator(HttpClient(request_timeout=5), max_attempts=1)
    router = Router(consumer_factory=lambda qc: q, mediator=mediator, breakers=breakers, settings=RouterSettings(cascade_delay=0))
    config = RouterConfig([PoolConfig("P", 10)], [QueueConfig("memory://main", "main")])

    # group FIFO and parallel groups: 4 groups x 5 messages, each delivery held 100 ms
    for i in range(5):
        for g in range(4):
            q.put(pointer(BASE + "/slow/100", "g%d-%d" % (g, i), "g%d" % g, "BLOCK_ON_ERROR"))
    await router.start(config)
    started = monotonic()
    check(await until(lambda: len(q) == 0), "20 grouped messages delivered")
    elapsed = monotonic() - started
    check(elapsed < 1.8, "groups ran in parallel (%.2f s for 5 x 100 ms per group)" % elapsed)

    # classification of real responses
    cases = [("ok200", "/ok"), ("bad400", "/status/400"), ("limited429", "/status/429?retry_after=7"), ("err500", "/status/500"), ("later", "/ackfalse?delay=4")]
    for mid, path in cases:
        q.put(pointer(BASE + path, mid, pool="P"))
    check(await until(lambda: q.counters["acked"] == 22 and q.counters["nacked"] == 3), "five outcomes answered")
    m = await q.metrics()
    equal(m["delayed"], 3, "429, 500 and ack:false are back on the queue, delayed")

    # breaker: two more failures on the 500 target open it; the next message is not sent
    for i in range(2):
        q.put(pointer(BASE + "/status/500", "trip%d" % i))
    check(await until(lambda: breakers.get(BASE + "/status/500").state == "OPEN"), "breaker opened")
    q.put(pointer(BASE + "/status/500", "blocked"))
    check(await until(lambda: q.counters["deferred"] >= 1), "message deferred while the breaker is open")
    await router.stop()
    print("elapsed", elapsed)
    finish()


asyncio.run(main())
