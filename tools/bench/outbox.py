"""Benchmark of the outbox processor: rows forwarded per second from an application database
(SQLite, PostgreSQL, MariaDB) to the platform.

    make bench-outbox        (or: .venv/bin/python tools/bench/outbox.py [options])

What it does, for each database that answers (a fresh database is created and dropped on
PostgreSQL and MariaDB; SQLite is a new file):
1. starts the platform, `python -m flowcatalyst.server platform` (the API alone, on SQLite,
   FC_AUTH=none), once for the whole run;
2. for two workloads — ungrouped rows, and rows in --groups message groups — writes --rows
   EVENT rows with the application-side helper (flowcatalyst.server.outbox.write_event, one
   transaction), starts `python -m flowcatalyst.server outbox` on that table, and measures
   rows / (time the table was empty - processor start), polling the row count every 50 ms;
3. prints the method and a table.

Options: --rows N (20000), --groups G (100), --postgres URL, --mysql URL, --skip-postgres,
--skip-mysql.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import Service, fmt_int, fmt_mb, free_port, loadavg, table

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flowcatalyst.core.httpclient import HttpClient  # noqa: E402
from flowcatalyst.server.outbox import create_table, dbapi, write_event  # noqa: E402

TYPE = "bench:orders:order:created"


class Database:
    """A fresh application database of one kind: `url`, `drop()`."""

    def __init__(self, kind, admin_url, workdir):
        self.kind = kind
        self.admin_url = admin_url
        self.name = "fc_outbox_bench_%s" % uuid.uuid4().hex[:8]
        if kind == "sqlite":
            self.url = "sqlite://%s" % (Path(workdir) / ("%s.db" % self.name))
            return
        self._admin("CREATE DATABASE %s" % self.name)
        base = admin_url.rsplit("/", 1)[0]
        self.url = "%s/%s" % (base, self.name)

    def _admin(self, sql):
        conn = dbapi.connect(self.admin_url)
        try:
            if self.kind == "postgres":
                conn.autocommit = True
            else:
                conn.autocommit(True)
            conn.cursor().execute(sql)
        finally:
            conn.close()

    def drop(self):
        if self.kind == "postgres":
            self._admin("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.name)
        elif self.kind == "mysql":
            self._admin("DROP DATABASE IF EXISTS %s" % self.name)


def fill(url, rows, groups):
    conn = dbapi.connect(url)
    try:
        create_table(conn)
        for n in range(rows):
            group = "g-%d" % (n % groups) if groups else None
            write_event(conn, TYPE, {"n": n}, source="bench", message_group=group)
        conn.commit()
    finally:
        conn.close()


def remaining(url):
    conn = dbapi.connect(url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM outbox_messages")
        count = cur.fetchone()[0]
        conn.rollback()
        return count
    finally:
        conn.close()


def run_case(workdir, platform_url, db, rows, groups):
    fill(db.url, rows, groups)
    port = free_port()
    env = dict(
        os.environ,
        FC_LOG_LEVEL="WARN",
        FC_OUTBOX_DB_URL=db.url,
        FC_API_BASE_URL=platform_url,
        FC_METRICS_PORT=str(port),
        FC_OUTBOX_POLL_INTERVAL_MS="50",
    )
    cmd = [sys.executable, "-m", "flowcatalyst.server", "outbox"]
    started = time.time()
    service = Service("outbox", cmd, env, Path(workdir) / ("outbox-%s.log" % db.name), port, ROOT)
    left = rows
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            left = remaining(db.url)
            if left == 0:
                break
            if service.proc.poll() is not None:
                raise SystemExit("bench: the outbox processor exited; see %s" % service.log_path)
            time.sleep(0.05)
        seconds = time.time() - started
    finally:
        rss, cpu = service.stop()
    return {"rate": (rows - left) / seconds, "left": left, "rss_kb": rss, "cpu_s": cpu}


def available(kind, url):
    try:
        Database(kind, url, tempfile.gettempdir()).drop()
        return None
    except Exception as e:
        return "%s at %s is not available: %s" % (kind, url, e)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--postgres", default=os.environ.get("FC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--mysql", default=os.environ.get("FC_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"))
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--skip-mysql", action="store_true")
    return ap.parse_args(argv)


async def wait_platform(platform):
    client = HttpClient()
    try:
        await platform.wait_ready(client)
    finally:
        await client.close()


def main(argv=None):
    args = parse_args(argv)
    load = loadavg()
    workdir = tempfile.mkdtemp(prefix="fc-outbox-bench-")
    kinds = [("sqlite", None)]
    for kind, url, skip in (("postgres", args.postgres, args.skip_postgres), ("mysql", args.mysql, args.skip_mysql)):
        why = "skipped" if skip else available(kind, url)
        if why:
            print("  %s: %s" % (kind, why))
        else:
            kinds.append((kind, url))
    port = free_port()
    env = dict(os.environ, FC_LOG_LEVEL="WARN", FC_AUTH="none", FLOWCATALYST_APP_KEY="bench", FC_DATA_DIR=workdir)
    platform = Service("platform", [sys.executable, "-m", "flowcatalyst.server", "platform", "--port", str(port)], env, Path(workdir) / "platform.log", port, ROOT)
    rows = []
    try:
        asyncio.run(wait_platform(platform))
        print("FlowCatalyst outbox benchmark\n=============================", flush=True)
        for kind, url in kinds:
            for groups in (0, args.groups):
                db = Database(kind, url, workdir)
                try:
                    r = run_case(workdir, platform.url, db, args.rows, groups)
                finally:
                    db.drop()
                label = "%d groups" % groups if groups else "ungrouped"
                print("  ran %s %s: %s rows/s" % (kind, label, fmt_int(r["rate"])), flush=True)
                rows.append([kind, label, fmt_int(r["rate"]), "%d" % r["left"], fmt_mb(r["rss_kb"]), "%.1f" % r["cpu_s"] if r["cpu_s"] is not None else "-"])
    finally:
        platform.stop()
    print()
    print("Method")
    print("  %d EVENT rows written with flowcatalyst.server.outbox.write_event in one transaction, then" % args.rows)
    print("  `python -m flowcatalyst.server outbox` (defaults: 500 rows per poll, 100 per request, 10")
    print("  batches at once) forwards them to `python -m flowcatalyst.server platform` (SQLite, API")
    print("  only); rate = rows / (table empty - processor start), so start-up is included.")
    print("  Grouped: message group n %% %d, sent in rounds (one row per group per request)." % args.groups)
    print("  Machine: %d CPUs, load average before start %s; everything shares them." % (os.cpu_count(), load))
    print()
    print(table(rows, ["database", "workload", "rows/s", "left", "peak RSS", "CPU s"]))


if __name__ == "__main__":
    main()
