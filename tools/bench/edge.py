"""Benchmark of the edge edition: publish over its HTTP API, deliver through its SQLite queue to
a sink on loopback.

    make bench                      (or: .venv/bin/python tools/bench/edge.py [options])

What it does, in one run:
1. starts the sink (tools/bench/sink.py --latency) and measures its ceiling with wrk;
2. for IMMEDIATE and for BLOCK_ON_ERROR with 100 message groups, starts a fresh
   `python -m flowcatalyst.edge` (a new database, one pool of concurrency 100, FC_LOG_LEVEL=WARN,
   FC_SQLITE_SYNC as configured: FULL by default) and
   - throughput: publishes 20,000 pointers through POST /api/messages in batches of 200 from 4
     concurrent publishers while the edge delivers; publish rate = messages / publishing time,
     delivery rate = messages / (last arrival at the sink - first publish);
   - latency: at a steady 200 msg/s, one pointer per request, for 10 s; each pointer carries
     its publish time in its payload and the sink records arrival minus that (same host, same
     clock): publish->delivery p50/p99;
   - peak RSS of the edge process (VmHWM);
3. prints the method, a table, and the issue's targets: ordered delivery >= 4,000 msg/s, p50
   latency at low load < 10 ms, RSS < 60 MB.

Options: --messages N (20000), --concurrency C (100), --groups G (100), --batch B (200),
--publishers P (4), --rate R (200), --latency-seconds S (10), --sync MODE (FULL),
--wrk-duration S (5).
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import (
    Service,
    Sink,
    fmt_int,
    fmt_mb,
    fmt_ms,
    free_port,
    loadavg,
    run_wrk,
    sink_stats,
    table,
    wait_delivered,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flowcatalyst.core.httpclient import HttpClient  # noqa: E402

TARGET_ORDERED = 4000
TARGET_P50_MS = 10
TARGET_RSS_MB = 60
POOL = "BENCH"


class Edge(Service):
    """`python -m flowcatalyst.edge` with a fresh database and one pool."""

    def __init__(self, workdir, concurrency, sync):
        self.dir = Path(tempfile.mkdtemp(dir=workdir))
        port = free_port()
        config = {"processingPools": [{"code": POOL, "concurrency": concurrency}], "queues": [{"queueName": "main"}]}
        (self.dir / "config.json").write_text(json.dumps(config))
        env = dict(os.environ, FC_LOG_LEVEL="WARN", FC_SQLITE_SYNC=sync)
        cmd = [sys.executable, "-m", "flowcatalyst.edge", "--config", str(self.dir / "config.json"), "--db", str(self.dir / "edge.db"), "--port", str(port)]
        Service.__init__(self, "edge", cmd, env, self.dir / "edge.log", port, ROOT)


def pointer(n, sink_url, mode, groups, tag):
    p = {
        "id": "%s-%d" % (tag, n),
        "poolCode": POOL,
        "mediationType": "HTTP",
        "mediationTarget": sink_url,
        "dispatchMode": mode,
        "payload": {"t": time.time()},
    }
    if mode != "IMMEDIATE":
        p["messageGroupId"] = "g-%d" % (n % groups)
    return p


async def publish(client, edge, messages):
    body = json.dumps({"messages": messages}).encode()
    response = await client.send("POST", edge.url + "/api/messages", {"Content-Type": "application/json"}, body, 60)
    if response.status != 200:
        raise SystemExit("bench: publish answered %d: %s" % (response.status, response.body[:300]))


async def throughput(client, edge, sink, args, mode):
    await sink_stats(client, sink, reset=True)
    tag = "tp"
    numbers = list(range(args.messages))
    batches = [numbers[i : i + args.batch] for i in range(0, len(numbers), args.batch)]
    started = time.time()

    async def publisher(mine):
        for batch in mine:
            await publish(client, edge, [pointer(n, sink.url, mode, args.groups, tag) for n in batch])

    await asyncio.gather(*[publisher(batches[i :: args.publishers]) for i in range(args.publishers)])
    published = time.time()
    stats = await wait_delivered(client, sink, args.messages, timeout=300)
    return {
        "published": args.messages,
        "publish_rate": args.messages / (published - started),
        "delivered": stats["requests"],
        "delivery_rate": stats["requests"] / (stats["last"] - started) if stats["last"] else None,
    }


async def steady_latency(client, edge, sink, args, mode):
    await sink_stats(client, sink, reset=True)
    count = int(args.rate * args.latency_seconds)
    interval = 1.0 / args.rate
    start = time.monotonic()
    for n in range(count):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await publish(client, edge, [pointer(n, sink.url, mode, args.groups, "lat")])
    stats = await wait_delivered(client, sink, count, timeout=60)
    return {"count": stats["latency_ms"]["count"], "p50_ms": stats["latency_ms"]["p50"], "p99_ms": stats["latency_ms"]["p99"], "achieved_rate": count / (time.monotonic() - start)}


async def run_case(args, sink, workdir, mode):
    client = HttpClient(request_timeout=60)
    edge = Edge(workdir, args.concurrency, args.sync)
    try:
        await edge.wait_ready(client)
        tp = await throughput(client, edge, sink, args, mode)
        lat = await steady_latency(client, edge, sink, args, mode)
    finally:
        rss, cpu = edge.stop()
        await client.close()
    return {"mode": mode, "throughput": tp, "latency": lat, "rss_kb": rss, "edge_cpu_s": cpu}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--latency-seconds", type=float, default=10)
    ap.add_argument("--sync", default="FULL")
    ap.add_argument("--wrk-duration", type=int, default=5)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    load = loadavg()
    workdir = tempfile.mkdtemp(prefix="fc-edge-bench-")
    sink = Sink(latency=True).start()
    try:
        print("FlowCatalyst edge benchmark\n===========================", flush=True)
        wrk = run_wrk(sink.url, args.concurrency, args.wrk_duration, 1, workdir)
        print("  ran wrk: %s" % (fmt_int(wrk["rps"]) + " req/s" if "rps" in wrk else wrk["error"]), flush=True)
        results = []
        for mode in ("IMMEDIATE", "BLOCK_ON_ERROR"):
            r = asyncio.run(run_case(args, sink, workdir, mode))
            print("  ran %s: delivery %s msg/s" % (mode, fmt_int(r["throughput"]["delivery_rate"])), flush=True)
            results.append(r)
    finally:
        sink.stop()
    report(args, wrk, results, load)
    return 0


def report(args, wrk, results, load):
    ceiling = wrk.get("rps")
    print()
    print("Method")
    print("  A fresh `python -m flowcatalyst.edge` per case: one pool %r of concurrency %d, one SQLite" % (POOL, args.concurrency))
    print("  queue, FC_SQLITE_SYNC=%s, FC_LOG_LEVEL=WARN; the sink (tools/bench/sink.py --latency) in its own process." % args.sync)
    print("  Throughput: %s pointers published through POST /api/messages in batches of %d by %d" % (fmt_int(args.messages), args.batch, args.publishers))
    print("  concurrent publishers while the edge delivers. publish rate = messages / publishing time;")
    print("  delivery rate = messages / (last arrival at the sink - first publish).")
    print("  Latency: %d msg/s for %g s, one pointer per request; each carries its publish time, the sink" % (args.rate, args.latency_seconds))
    print("  records arrival minus publish time (same host, same clock).")
    print("  Ordered case: BLOCK_ON_ERROR, %d message groups (message n in group n %% %d)." % (args.groups, args.groups))
    if ceiling:
        print("  Sink ceiling: %s" % wrk["command"])
    print("  Machine: %d CPUs, load average before start %s. Publisher, edge and sink share them." % (os.cpu_count() or 0, load))
    print()
    print("Sink ceiling (wrk): %s" % (fmt_int(ceiling) + " req/s" if ceiling else wrk.get("error")))
    print()
    rows = []
    for r in results:
        tp, lat = r["throughput"], r["latency"]
        rows.append(
            [
                r["mode"],
                fmt_int(tp["publish_rate"]),
                fmt_int(tp["delivery_rate"]),
                "%s/%s" % (fmt_int(tp["delivered"]), fmt_int(tp["published"])),
                fmt_ms(lat["p50_ms"]),
                fmt_ms(lat["p99_ms"]),
                fmt_mb(r["rss_kb"]),
                "%.3f" % (tp["delivery_rate"] / ceiling) if ceiling and tp["delivery_rate"] else "-",
            ]
        )
    print(table(rows, ["case", "publish/s", "deliver/s", "delivered", "p50 ms", "p99 ms", "peak RSS", "x ceiling"]))
    print()
    ordered = next(r for r in results if r["mode"] != "IMMEDIATE")
    checks = [
        ("ordered delivery >= %s msg/s" % fmt_int(TARGET_ORDERED), ordered["throughput"]["delivery_rate"] or 0, lambda v: v >= TARGET_ORDERED, fmt_int),
        ("p50 latency at %d msg/s < %d ms (worst case)" % (args.rate, TARGET_P50_MS), max(r["latency"]["p50_ms"] or 1e9 for r in results), lambda v: v < TARGET_P50_MS, fmt_ms),
        ("peak RSS < %d MB (worst case)" % TARGET_RSS_MB, max(r["rss_kb"] or 1e9 for r in results) / 1024, lambda v: v < TARGET_RSS_MB, lambda v: "%.1f MB" % v),
    ]
    print("Targets")
    for name, value, ok, fmt in checks:
        print("  %-40s %s (%s)" % (name, "MET" if ok(value) else "NOT MET", fmt(value)))


if __name__ == "__main__":
    sys.exit(main())
