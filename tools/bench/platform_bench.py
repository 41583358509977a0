"""Benchmark of the platform: events ingested through the batch API, and events delivered end
to end (event -> fan-out -> job -> scheduler -> queue -> router -> dispatch callback ->
webhook), on the SQLite store and on PostgreSQL.

    make bench-platform      (or: .venv/bin/python tools/bench/platform_bench.py [options])

(Not `platform.py`: every script in tools/bench has the folder first on sys.path, where that
name would shadow the standard library module `platform`.)

What it does, for each store (PostgreSQL only when it answers at --postgres; a fresh
database is created and dropped):
1. ingest: starts `python -m flowcatalyst.server platform` (the API alone: no stream
   processor, scheduler or router, so nothing else competes for the store) and posts
   --events events to POST /api/events/batch in batches of --batch from --publishers
   concurrent clients; rate = events / publishing time (every item answered SUCCESS);
2. end to end: starts `python -m flowcatalyst.server all` (everything in one process: API,
   stream processor, scheduler, router on the embedded SQLite queue), creates one
   subscription (dataOnly) to the sink, and publishes --e2e-events events the same way,
   each carrying its publish time; rate = webhooks at the sink / (last arrival - first
   publish), and publish->webhook latency p50/p99 from the sink;
3. prints the method, a table, and the targets of the platform issue: ingest >= 5,000
   events/s and end to end >= 1,000 events/s on SQLite.

Options: --events N (20000), --e2e-events N (5000), --batch B (500), --publishers P (4),
--postgres URL (postgresql://postgres@127.0.0.1:5432/postgres), --skip-postgres,
--sync MODE (FC_SQLITE_SYNC, FULL).
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import (
    Service,
    Sink,
    fmt_int,
    fmt_mb,
    fmt_ms,
    free_port,
    loadavg,
    sink_stats,
    table,
    wait_delivered,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flowcatalyst.core.httpclient import HttpClient  # noqa: E402

TARGET_INGEST = 5000
TARGET_E2E = 1000
JSON = {"Content-Type": "application/json"}


class Platform(Service):
    """`python -m flowcatalyst.server COMMAND` on a fresh store."""

    def __init__(self, workdir, command, database_url, sync):
        self.dir = Path(tempfile.mkdtemp(dir=workdir))
        port = free_port()
        env = dict(
            os.environ,
            FC_LOG_LEVEL="WARN",
            FC_AUTH="none",
            FLOWCATALYST_APP_KEY="bench-app-key",
            FC_DATA_DIR=str(self.dir),
            FC_DATABASE_URL=database_url or "sqlite://%s" % (self.dir / "platform.db"),
            FC_SQLITE_SYNC=sync,
            FC_DEFAULT_POOL_CONCURRENCY="100",
        )
        cmd = [sys.executable, "-m", "flowcatalyst.server", command, "--port", str(port)]
        Service.__init__(self, "platform", cmd, env, self.dir / "platform.log", port, ROOT)


async def post(client, url, body):
    response = await client.send("POST", url, JSON, json.dumps(body).encode(), 120)
    if response.status not in (200, 201):
        raise SystemExit("bench: POST %s answered %d: %s" % (url, response.status, response.body[:300]))
    return json.loads(response.body)


async def publish_events(client, platform, count, batch, publishers):
    """Publish `count` events (each with its publish time as data.t); seconds it took."""
    numbers = list(range(count))
    batches = [numbers[i : i + batch] for i in range(0, count, batch)]

    async def publisher(mine):
        for chunk in mine:
            items = [
                {"type": "bench:orders:order:created", "source": "bench", "data": {"n": n, "t": time.time()}}
                for n in chunk
            ]
            results = (await post(client, platform.url + "/api/events/batch", {"items": items}))["results"]
            refused = [r for r in results if r["status"] != "SUCCESS"]
            if refused:
                raise SystemExit("bench: events refused: %s" % refused[:3])

    started = time.time()
    await asyncio.gather(*[publisher(batches[i::publishers]) for i in range(publishers)])
    return started, time.time() - started


async def ingest(args, workdir, database_url):
    client = HttpClient(request_timeout=120)
    platform = Platform(workdir, "platform", database_url, args.sync)
    try:
        await platform.wait_ready(client)
        _, seconds = await publish_events(client, platform, args.events, args.batch, args.publishers)
    finally:
        rss, cpu = platform.stop()
        await client.close()
    return {"rate": args.events / seconds, "seconds": seconds, "rss_kb": rss, "cpu_s": cpu}


async def end_to_end(args, workdir, database_url, sink):
    client = HttpClient(request_timeout=120)
    platform = Platform(workdir, "all", database_url, args.sync)
    try:
        await platform.wait_ready(client)
        await post(
            client,
            platform.url + "/api/subscriptions",
            {
                "code": "bench",
                "name": "bench",
                "endpoint": sink.url,
                "eventTypes": [{"eventTypeCode": "bench:*:*:*"}],
            },
        )
        await sink_stats(client, sink, reset=True)
        started, publish_seconds = await publish_events(
            client, platform, args.e2e_events, min(args.batch, 100), args.publishers
        )
        stats = await wait_delivered(client, sink, args.e2e_events, timeout=600)
    finally:
        rss, cpu = platform.stop()
        await client.close()
    delivered = stats["requests"]
    return {
        "rate": delivered / (stats["last"] - started) if stats["last"] else None,
        "delivered": delivered,
        "publish_rate": args.e2e_events / publish_seconds,
        "p50_ms": stats["latency_ms"]["p50"],
        "p99_ms": stats["latency_ms"]["p99"],
        "rss_kb": rss,
        "cpu_s": cpu,
    }


class FreshPostgres:
    """A new database beside --postgres's, dropped afterwards."""

    def __init__(self, admin_url):
        import psycopg

        self.psycopg = psycopg
        self.admin_url = admin_url
        self.name = "fc_bench_%s" % uuid.uuid4().hex[:8]
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute('CREATE DATABASE "%s"' % self.name)
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self.name

    def drop(self):
        with self.psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.name)


def postgres_or_reason(args):
    if args.skip_postgres:
        return None, "skipped (--skip-postgres)"
    try:
        FreshPostgres(args.postgres).drop()
    except Exception as e:
        return None, "PostgreSQL at %s is not available: %s" % (args.postgres, e)
    return args.postgres, None


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--e2e-events", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument(
        "--postgres",
        default=os.environ.get("FC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--sync", default="FULL")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    load = loadavg()
    workdir = tempfile.mkdtemp(prefix="fc-platform-bench-")
    postgres, why_not = postgres_or_reason(args)
    sink = Sink(latency=True).start()
    rows = []
    figures = {}
    try:
        print("FlowCatalyst platform benchmark\n===============================", flush=True)
        for store in ("sqlite", "postgres"):
            if store == "postgres" and postgres is None:
                print("  postgres: %s" % why_not, flush=True)
                continue
            for case in ("ingest", "end-to-end"):
                db = FreshPostgres(postgres) if store == "postgres" else None
                try:
                    url = db.url if db else None
                    if case == "ingest":
                        r = asyncio.run(ingest(args, workdir, url))
                    else:
                        r = asyncio.run(end_to_end(args, workdir, url, sink))
                finally:
                    if db:
                        db.drop()
                figures[(store, case)] = r
                print("  ran %s %s: %s events/s" % (store, case, fmt_int(r["rate"])), flush=True)
                rows.append(
                    [
                        store,
                        case,
                        fmt_int(r["rate"]),
                        "%s/%d" % (fmt_int(r["delivered"]), args.e2e_events) if "delivered" in r else "-",
                        fmt_ms(r.get("p50_ms")) if "p50_ms" in r else "-",
                        fmt_ms(r.get("p99_ms")) if "p99_ms" in r else "-",
                        fmt_mb(r["rss_kb"]),
                        "%.1f" % r["cpu_s"] if r["cpu_s"] is not None else "-",
                    ]
                )
    finally:
        sink.stop()
    print()
    print("Method")
    print("  ingest: `python -m flowcatalyst.server platform` (API only), %d events to" % args.events)
    print("  POST /api/events/batch in batches of %d from %d concurrent publishers;" % (args.batch, args.publishers))
    print("  rate = events / publishing time.")
    print("  end-to-end: `python -m flowcatalyst.server all` (API, stream processor, scheduler and router")
    print("  on the embedded SQLite queue, default pool concurrency 100), one dataOnly subscription to")
    print("  tools/bench/sink.py, %d events in batches of %d; rate = webhooks / (last arrival -" % (args.e2e_events, min(args.batch, 100)))
    print("  first publish); latency = webhook arrival - the publish time in the event's data.")
    print("  FC_SQLITE_SYNC=%s, FC_LOG_LEVEL=WARN, FC_AUTH=none. Machine: %d CPUs, load average before" % (args.sync, os.cpu_count()))
    print("  start %s. Publisher, platform, database and sink share them." % load)
    print()
    print(
        table(
            rows,
            ["store", "case", "events/s", "delivered", "p50 ms", "p99 ms", "peak RSS", "CPU s"],
        )
    )
    print()
    print("Targets (SQLite)")
    for case, target in (("ingest", TARGET_INGEST), ("end-to-end", TARGET_E2E)):
        rate = figures.get(("sqlite", case), {}).get("rate")
        verdict = "MET" if rate and rate >= target else "MISSED"
        print("  %-22s >= %s events/s   %s (%s)" % (case, fmt_int(target), verdict, fmt_int(rate)))


if __name__ == "__main__":
    main()
