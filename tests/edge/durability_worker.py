"""A delivery process for the durability test (test_sqlitequeue_durability.py): a core Router
consuming a SqliteQueue and delivering over real HTTP, until its queue is empty.

    python durability_worker.py DB_PATH QUEUE_NAME

It opens the database (the lock file makes sure no one else has it), starts the router with
one pool `P` and the queue, and, once the queue is empty, stops the router, closes the store
and exits 0, printing "drained". The test SIGKILLs the first run mid-delivery and starts a
second one on the same file.
"""

import asyncio
import sys

from flowcatalyst.core import (
    HttpClient,
    HttpMediator,
    PoolConfig,
    QueueConfig,
    Router,
    RouterConfig,
    RouterSettings,
)
from flowcatalyst.edge.sqlitequeue import SqliteQueue
from flowcatalyst.edge.sqlstore import SqliteStore

VISIBILITY_TIMEOUT = 60  # far beyond the test: only the restart may release what was in flight


async def main(path, name):
    store = SqliteStore(path)
    queue = SqliteQueue(store, name, visibility_timeout=VISIBILITY_TIMEOUT, wait_seconds=1)
    mediator = HttpMediator(HttpClient(request_timeout=5.0, connect_timeout=1.0), max_attempts=1, retry_delays=(0.01,))
    settings = RouterSettings(cascade_delay=0.1, full_pool_defer=0.1, shutdown_timeout=5.0)
    router = Router(consumer_factory=lambda qc: queue, mediator=mediator, settings=settings)
    config = RouterConfig([PoolConfig("P", 10)], [QueueConfig("sqlite:" + name, name, visibility_timeout=VISIBILITY_TIMEOUT)])
    await router.start(config)
    print("started", flush=True)
    try:
        while await queue.size():
            await asyncio.sleep(0.05)
    finally:
        await router.stop()
        store.close()
    print("drained", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
