"""One benchmark case of the core engine: MemoryQueue -> Router (one pool) -> HTTP sink.

Runs unchanged on CPython and MicroPython, using only the core's public API. It publishes
`--messages` pointers to a MemoryQueue (timed separately), starts a Router with one pool of
`--concurrency`, and times from router start until every message is acked. Prints one JSON
line of results on stdout.

Latency is measured per message from the moment the router's poll returned it (poll) to the
moment the router acked it on the queue (ack): it covers waiting in the pool, the HTTP
round trip and the ack. publish->ack is reported too, but with everything published up front
it mostly measures the backlog. Peak RSS is VmHWM from /proc/self/status at the end. A task
samples the pool every 50 ms (Router.pools -> ProcessPool.active_workers, queue_size,
capacity) to tell a busy engine from a starved one.

    python tools/bench/core_workload.py --url http://127.0.0.1:PORT/hook [--mode IMMEDIATE]
        [--messages 20000] [--concurrency 100] [--groups 100] [--idle-per-origin N]
        [--capacity-wait S]   (RouterSettings.capacity_wait, for experiments)
        [--layer client]      (the HttpClient alone, no queue or router: a reference)
        [--profile FILE]      (CPython only: cProfile the delivery phase into FILE)

MicroPython: MICROPYPATH=.frozen:DIR micropython -X heapsize=48M core_workload.py ...
where DIR contains flowcatalyst/core. Set FC_LOG_LEVEL=WARN to keep logging out of the way.
"""

import asyncio
import gc
import json
import sys
import time

from flowcatalyst.core import (
    HttpClient,
    HttpMediator,
    MemoryQueue,
    PoolConfig,
    QueueConfig,
    Router,
    RouterConfig,
    RouterSettings,
)

MICROPYTHON = sys.implementation.name == "micropython"

if MICROPYTHON:
    now_us = time.ticks_us
    diff_us = time.ticks_diff
else:

    def now_us():
        return time.perf_counter_ns() // 1000

    def diff_us(a, b):
        return a - b


POOL = "BENCH"
STALL_SECONDS = 30  # no ack for this long ends the run as stalled


def parse_args(argv):
    opts = {
        "url": None,
        "mode": "IMMEDIATE",
        "messages": 20000,
        "concurrency": 100,
        "groups": 100,
        "idle-per-origin": None,
        "profile": None,
        "capacity-wait": None,
        "layer": "router",
    }
    i = 0
    while i < len(argv):
        name = argv[i]
        if not name.startswith("--") or name[2:] not in opts or i + 1 >= len(argv):
            raise SystemExit("usage: core_workload.py --url URL [--mode M] [--messages N] [--concurrency C] [--groups G] [--idle-per-origin N] [--capacity-wait S] [--layer router|client] [--profile FILE]")
        opts[name[2:]] = argv[i + 1]
        i += 2
    if not opts["url"]:
        raise SystemExit("core_workload.py: --url is required")
    for key in ("messages", "concurrency", "groups"):
        opts[key] = int(opts[key])
    ipo = opts["idle-per-origin"]
    opts["idle-per-origin"] = opts["concurrency"] if ipo is None else int(ipo)
    opts["mode"] = opts["mode"].upper()
    return opts


def proc_status_kb(field):
    """A `kB` field of /proc/self/status (VmHWM, VmRSS), or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            text = f.read()
    except OSError:
        return None
    for line in text.split("\n"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def cpu_seconds():
    """User + system CPU time of this process from /proc/self/stat (USER_HZ is 100 on Linux),
    or None where there is none."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / 100


def heap_kb():
    """(live, total) kB of the MicroPython heap after a collection; (None, None) on CPython."""
    if not MICROPYTHON:
        return None, None
    gc.collect()
    return gc.mem_alloc() // 1024, (gc.mem_alloc() + gc.mem_free()) // 1024


class TimedQueue(MemoryQueue):
    """A MemoryQueue that timestamps what the router polls and acks, and checks group order."""

    def __init__(self, name, total, groups, ordered, **kw):
        super().__init__(name, **kw)
        self.total = total
        self.groups = groups
        self.ordered = ordered
        self.published_at = [0] * total
        self.poll_ack = [0] * total  # microseconds, indexed by message number
        self.publish_ack = [0] * total
        self.acked_count = 0
        self.order_violations = 0
        self.last_in_group = [-1] * groups
        self.polled = {}  # receipt handle -> (message number, poll time)
        self.done = asyncio.Event()
        self.finished_at = 0
        self.stalled = False

    async def poll(self, max_messages=10, wait=None):
        batch = await super().poll(max_messages, wait)
        if batch:
            t = now_us()
            polled = self.polled
            for q in batch:
                polled[q.receipt_handle] = (int(q.message.id[2:]), t)
        return batch

    async def ack(self, handle):
        await super().ack(handle)
        t = now_us()
        n, polled_at = self.polled.pop(handle)
        self.poll_ack[n] = diff_us(t, polled_at)
        self.publish_ack[n] = diff_us(t, self.published_at[n])
        if self.ordered:
            g = n % self.groups
            if n < self.last_in_group[g]:
                self.order_violations += 1
            self.last_in_group[g] = n
        self.acked_count += 1
        if self.acked_count >= self.total:
            self.finished_at = t
            self.done.set()


async def sample_pool(router, queue, samples, every=0.05):
    """Every 50 ms: how many of the pool's workers are busy, whether it has nothing to do
    (no worker busy, nothing queued) although messages are still undelivered ("starved"),
    and whether its queue is at capacity ("full", so the router stops polling). Ends the run
    as stalled after STALL_SECONDS without an ack."""
    last_count, last_change = -1, now_us()
    while not queue.done.is_set():
        await asyncio.sleep(every)
        now = now_us()
        if queue.acked_count != last_count:
            last_count, last_change = queue.acked_count, now
        elif diff_us(now, last_change) > STALL_SECONDS * 1000000:
            queue.stalled = True  # no ack for a long time: give up rather than hang
            queue.finished_at = now
            queue.done.set()
            return
        for pool in router.pools.values():
            active, queued = pool.active_workers, pool.queue_size
            samples["n"] += 1
            samples["busy"] += active
            if active == 0 and queued == 0 and queue.acked_count < queue.total:
                samples["starved"] += 1
            if queued >= pool.capacity:
                samples["full"] += 1


def pointer(n, url, mode, groups):
    p = {
        "id": "m-%d" % n,
        "poolCode": POOL,
        "mediationType": "HTTP",
        "mediationTarget": url,
        "dispatchMode": mode,
    }
    if mode != "IMMEDIATE":
        p["messageGroupId"] = "g-%d" % (n % groups)
    return p


def percentile_ms(values, q):
    """Nearest-rank percentile of microsecond values (sorted), in milliseconds."""
    if not values:
        return None
    rank = int(q * len(values) + 0.999999)
    rank = min(max(rank, 1), len(values))
    return values[rank - 1] / 1000


async def run(opts):
    total = opts["messages"]
    ordered = opts["mode"] != "IMMEDIATE"
    queue = TimedQueue("bench", total, opts["groups"], ordered, wait_seconds=1)
    client = HttpClient(max_idle_per_origin=opts["idle-per-origin"])
    mediator = HttpMediator(client)
    settings = RouterSettings()
    if opts["capacity-wait"] is not None:
        settings.capacity_wait = float(opts["capacity-wait"])
    router = Router(consumer_factory=lambda qc: queue, mediator=mediator, settings=settings)
    config = RouterConfig([PoolConfig(POOL, opts["concurrency"])], [QueueConfig("memory://bench", name="bench")])

    samples = {"n": 0, "busy": 0, "starved": 0, "full": 0}
    gc.collect()
    rss_start = proc_status_kb("VmRSS")

    url, mode, groups = opts["url"], opts["mode"], opts["groups"]
    published_at = queue.published_at
    t0 = now_us()
    for n in range(total):
        published_at[n] = now_us()
        queue.put(pointer(n, url, mode, groups))
    publish_us = diff_us(now_us(), t0)
    gc.collect()
    rss_published = proc_status_kb("VmRSS")
    heap_published, heap_total = heap_kb()

    profiler = None
    if opts["profile"]:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu_started = cpu_seconds()
    started = now_us()
    await router.start(config)
    sampling = asyncio.create_task(sample_pool(router, queue, samples))
    await queue.done.wait()
    run_us = diff_us(queue.finished_at, started)
    cpu_used = cpu_seconds()
    cpu_used = None if cpu_used is None or cpu_started is None else cpu_used - cpu_started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(opts["profile"])
    sampling.cancel()
    await router.stop(5)

    poll_ack = queue.poll_ack
    poll_ack.sort()
    publish_ack = queue.publish_ack
    publish_ack.sort()
    counters = queue.counters
    seconds = run_us / 1e6
    impl = sys.implementation
    return {
        "interpreter": impl.name,
        "version": "%d.%d.%d" % tuple(impl.version[:3]),
        "sys_version": sys.version.split("\n")[0],
        "mode": mode,
        "messages": total,
        "concurrency": opts["concurrency"],
        "groups": groups if ordered else None,
        "idle_per_origin": opts["idle-per-origin"],
        "publish_seconds": publish_us / 1e6,
        "seconds": seconds,
        "msgs_per_s": total / seconds if seconds > 0 else None,
        "cpu_seconds": cpu_used,
        "poll_ack_p50_ms": percentile_ms(poll_ack, 0.50),
        "poll_ack_p99_ms": percentile_ms(poll_ack, 0.99),
        "publish_ack_p50_ms": percentile_ms(publish_ack, 0.50),
        "publish_ack_p99_ms": percentile_ms(publish_ack, 0.99),
        "acked": queue.acked_count,
        "stalled": queue.stalled,
        "nacked": counters["nacked"],
        "deferred": counters["deferred"],
        "received": counters["received"],
        "dead_lettered": queue.dead_lettered_total,
        "order_violations": queue.order_violations if ordered else None,
        "samples": samples["n"],
        "workers_busy": samples["busy"] / (samples["n"] * opts["concurrency"]) if samples["n"] else None,
        "starved_share": samples["starved"] / samples["n"] if samples["n"] else None,
        "full_share": samples["full"] / samples["n"] if samples["n"] else None,
        "connections_opened": client.connections_opened,
        "rss_start_kb": rss_start,
        "rss_published_kb": rss_published,
        "peak_rss_kb": proc_status_kb("VmHWM"),
        "heap_total_kb": heap_total,
        "heap_live_published_kb": heap_published,
    }


async def run_client(opts):
    """The transport alone, for reference: `concurrency` tasks share `messages` POSTs of the
    same body the mediator sends, through one HttpClient (no queue, router or pool)."""
    total = opts["messages"]
    client = HttpClient(max_idle_per_origin=opts["idle-per-origin"])
    url = opts["url"]
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    state = {"left": total, "failed": 0}

    async def worker():
        while state["left"] > 0:
            state["left"] -= 1
            n = total - state["left"]
            response = await client.send("POST", url, headers, ('{"messageId":"m-%d"}' % n).encode())
            if response.status != 200:
                state["failed"] += 1

    cpu_started = cpu_seconds()
    started = now_us()
    await asyncio.gather(*[worker() for _ in range(opts["concurrency"])])
    run_us = diff_us(now_us(), started)
    cpu_used = cpu_seconds()
    await client.close()
    seconds = run_us / 1e6
    impl = sys.implementation
    return {
        "interpreter": impl.name,
        "version": "%d.%d.%d" % tuple(impl.version[:3]),
        "layer": "client",
        "messages": total,
        "concurrency": opts["concurrency"],
        "seconds": seconds,
        "msgs_per_s": total / seconds if seconds > 0 else None,
        "cpu_seconds": None if cpu_used is None or cpu_started is None else cpu_used - cpu_started,
        "failed": state["failed"],
        "connections_opened": client.connections_opened,
        "peak_rss_kb": proc_status_kb("VmHWM"),
    }


def main():
    opts = parse_args(sys.argv[1:])
    if opts["profile"] and MICROPYTHON:
        raise SystemExit("core_workload.py: --profile needs CPython")
    if opts["layer"] == "client":
        result = asyncio.run(run_client(opts))
    else:
        result = asyncio.run(run(opts))
    sys.stdout.write(json.dumps(result) + "\n")


main()
