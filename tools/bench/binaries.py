"""Benchmark of the native binaries (tools/build.py, docs/binaries.md) beside `python -m` of the
same edition, in the same run.

    make bench-binaries      (or: .venv/bin/python tools/bench/binaries.py [options])

For the edge edition (`python -m flowcatalyst.edge`, dist/fc-edge, dist/fc-edge.dist/fc-edge)
and the server edition (`python -m flowcatalyst.server dev`, dist/fc-server,
dist/fc-server.dist/fc-server), one after the other on this machine:
- size: the onefile file; the standalone folder; nothing for `python -m`;
- start: from the process start to the first 200 from GET /health (polled every 5 ms), median
  of --starts runs, each on a fresh database. Cold: nothing the program caches itself is there:
  a new onefile cache folder (XDG_CACHE_HOME), so the binary unpacks, and a new bytecode cache
  (PYTHONPYCACHEPREFIX), so CPython compiles every module; the OS page cache is left warm.
  Warm: the same caches, filled by a first unmeasured run;
- idle RSS: the resident memory --idle seconds after /health answered, of the process and its
  children (a onefile binary is a small bootstrap process plus the program it unpacked);
- RSS while delivering: pointers published at --rate msg/s for --seconds (the edge: POST
  /api/messages, IMMEDIATE, to a sink process; the server: events to POST /api/events/batch with
  a subscription to the sink, so the platform fans out, schedules, queues and delivers), the
  highest resident memory sampled every 0.5 s, and the rate the sink received.
- the floor (--floor, on by default): tools/bench/rss_floor.py, the standard library the edge
  runs on and nothing of FlowCatalyst, idle under `python -I -S` and compiled by Nuitka with
  fc-edge's own options (standalone): the least an edge-like program holds; fc-edge's idle RSS
  above it is FlowCatalyst's own.
Then it prints the table and the targets of the binaries issue: fc-edge onefile <= 8 MB, fc-server
onefile <= 20 MB, warm start of fc-edge within 1.5x of `python -m flowcatalyst.edge`, idle RSS of
fc-edge <= 25 MB. Linux only (/proc).

Options: --starts N (10), --idle S (10), --rate R (1000), --seconds S (10), --only edge|server,
--no-floor.
"""

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Sink, fmt_int, fmt_mb, free_port, loadavg, table

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import build  # noqa: E402  (tools/build.py: the binaries, how to start and stop them)

TARGET_EDGE_MB = 8
TARGET_SERVER_MB = 20
TARGET_WARM_RATIO = 1.5
TARGET_EDGE_IDLE_MB = 25
EVENT_TYPE = "bench:binaries:order:created"
FLOOR = Path(__file__).with_name("rss_floor.py")


def variants(edition):
    """(label, command, size in bytes or None) for `python -m` and the two binary forms."""
    e = build.EDITIONS[edition]
    module = e.main.split(":")[0].rsplit(".", 1)[0]  # flowcatalyst.edge / flowcatalyst.server
    onefile, standalone = build.binary(e, "onefile"), build.binary(e, "standalone")
    for path in (onefile, standalone):
        if not path.exists():
            raise SystemExit("bench: %s is missing: run `make binaries` first" % path)
    return [
        ("python -m %s" % module, [sys.executable, "-m", module], None),
        ("%s onefile" % e.name, [str(onefile)], build.size_of(onefile)),
        ("%s standalone" % e.name, [str(standalone)], build.size_of(standalone.parent)),
    ]


# -- processes ----------------------------------------------------------------------------------


def tree_rss_kb(pid):
    """VmRSS of `pid` plus its descendants, in kB (Linux /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            with open("/proc/%d/status" % p) as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


class Run:
    """One start of `cmd` as edition `name` in a fresh folder under `workdir`, with the given
    onefile cache and bytecode cache folders."""

    def __init__(self, name, cmd, workdir, cache, pycache):
        self.dir = Path(tempfile.mkdtemp(dir=workdir))
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        env = build.service_env(
            self.dir, XDG_CACHE_HOME=str(cache), PYTHONPYCACHEPREFIX=str(pycache)
        )
        env.update(FC_AUTH="none", FC_DEFAULT_POOL_CONCURRENCY="100")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            build.service_command(cmd, name, self.port, self.dir),
            cwd=self.dir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "service.log", "w"),
        )
        self.start_seconds = self._wait_healthy(started)

    def _wait_healthy(self, started, timeout=60):
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(
                    "bench: %s exited: %s"
                    % (self.proc.args, (self.dir / "service.log").read_text()[-2000:])
                )
            try:
                if build.http("GET", self.base + "/health", timeout=1)[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.005)
        raise SystemExit("bench: %s did not answer /health" % self.proc.args)

    def stop(self):
        status = build.stop_service(self.proc)
        if status != 0:
            raise SystemExit("bench: %s exited with %s on SIGTERM" % (self.proc.args, status))


# -- measurements -------------------------------------------------------------------------------


def start_times(name, cmd, workdir, starts):
    """(median cold, median warm) seconds to the first 200 from /health."""
    cold, warm = [], []
    shared_cache, shared_pycache = Path(workdir) / "cache", Path(workdir) / "pycache"
    Run(name, cmd, workdir, shared_cache, shared_pycache).stop()  # fills the warm caches
    for _ in range(starts):
        fresh = Path(tempfile.mkdtemp(dir=workdir))
        run = Run(name, cmd, workdir, fresh / "cache", fresh / "pycache")
        cold.append(run.start_seconds)
        run.stop()
        run = Run(name, cmd, workdir, shared_cache, shared_pycache)
        warm.append(run.start_seconds)
        run.stop()
    return statistics.median(cold), statistics.median(warm)


def idle_rss(name, cmd, workdir, seconds):
    run = Run(name, cmd, workdir, Path(workdir) / "cache", Path(workdir) / "pycache")
    time.sleep(seconds)
    rss = tree_rss_kb(run.proc.pid)
    run.stop()
    return rss


def pointer(n, sink):
    return {
        "id": "b-%d-%d" % (os.getpid(), n),
        "mediationType": "HTTP",
        "mediationTarget": sink.url,
        "payload": {"n": n},
    }


def publisher(name, run, sink):
    """A function publishing messages numbered n..n+k-1 to `run` for delivery to `sink`."""
    if name == "fc-edge":
        return lambda numbers: build.http(
            "POST", run.base + "/api/messages", {"messages": [pointer(n, sink) for n in numbers]}
        )
    subscription = {
        "code": "bench",
        "name": "bench",
        "endpoint": sink.url,
        "eventTypes": [{"eventTypeCode": EVENT_TYPE}],
    }
    status, body = build.http("POST", run.base + "/api/subscriptions", subscription)
    if status not in (200, 201):
        raise SystemExit("bench: POST /api/subscriptions answered %s %s" % (status, body))
    return lambda numbers: build.http(
        "POST",
        run.base + "/api/events/batch",
        {"items": [{"type": EVENT_TYPE, "source": "bench", "data": {"n": n}} for n in numbers]},
    )


def loaded_rss(name, cmd, workdir, rate, seconds):
    """(highest sampled RSS in kB, delivery rate) while publishing `rate` messages per second
    for `seconds` in batches every 50 ms, then until the sink has them all (60 s at most);
    delivery rate = messages at the sink / (last arrival - first publish)."""
    sink = Sink(latency=True).start()
    stats_url = "http://127.0.0.1:%d/__stats" % sink.port
    run = Run(name, cmd, workdir, Path(workdir) / "cache", Path(workdir) / "pycache")
    peak = 0

    def sample():
        nonlocal peak
        peak = max(peak, tree_rss_kb(run.proc.pid))

    try:
        publish = publisher(name, run, sink)
        build.http("GET", stats_url + "?reset=1")
        per_tick, tick = max(1, rate // 20), 0.05
        count = int(rate * seconds) // per_tick * per_tick
        started, wall = time.monotonic(), time.time()
        for first in range(0, count, per_tick):
            due = started + tick * (first // per_tick)
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            status, body = publish(range(first, first + per_tick))
            if status not in (200, 201, 202):
                raise SystemExit("bench: publishing answered %s %s" % (status, str(body)[:300]))
            if first % (10 * per_tick) == 0:
                sample()
        deadline = time.monotonic() + 60
        while (stats := build.http("GET", stats_url)[1])[
            "requests"
        ] < count and time.monotonic() < deadline:
            sample()
            time.sleep(0.5)
        sample()
    finally:
        run.stop()
        sink.stop()
    return peak, stats["requests"] / (stats["last"] - wall) if stats["last"] else None


def measure(edition, args, workdir):
    name = build.EDITIONS[edition].name
    results = []
    for label, cmd, size in variants(edition):
        print("bench: %s ..." % label, flush=True)
        cold, warm = start_times(name, cmd, workdir, args.starts)
        idle = idle_rss(name, cmd, workdir, args.idle)
        loaded, received = loaded_rss(name, cmd, workdir, args.rate, args.seconds)
        results.append(
            {
                "label": label,
                "size": size,
                "cold": cold,
                "warm": warm,
                "idle": idle,
                "loaded": loaded,
                "received": received,
            }
        )
    return results


def floor_variants():
    """(label, command) of rss_floor.py under `python -I -S` and compiled with fc-edge's options
    (standalone, into build/nuitka/rss-floor-standalone)."""
    edition = dataclasses.replace(
        build.EDITIONS["edge"], name="rss-floor", packages=[], main="rss_floor:main", extra=[]
    )
    out = build.WORK / "rss-floor-standalone"
    print("bench: compiling %s as fc-edge is compiled ..." % FLOOR.name, flush=True)
    build.compile_program(edition, "standalone", FLOOR, out, os.cpu_count() or 1, FLOOR.parent)
    compiled = out / (FLOOR.stem + ".dist") / (edition.name + build.EXE)
    return [
        ("%s, python -I -S" % FLOOR.name, [sys.executable, "-I", "-S", str(FLOOR)]),
        ("%s, Nuitka standalone" % FLOOR.name, [str(compiled)]),
    ]


def floor_rss(cmd, workdir, seconds):
    """Idle RSS in kB of the floor program `seconds` after its start."""
    db = Path(tempfile.mkdtemp(dir=workdir)) / "floor.db"
    proc = subprocess.Popen(cmd + [str(db)])
    time.sleep(seconds)
    if proc.poll() is not None:
        raise SystemExit("bench: %s exited with %s" % (cmd, proc.returncode))
    rss = tree_rss_kb(proc.pid)
    proc.kill()
    proc.wait()
    return rss


def measure_floor(args, workdir):
    return [
        {"label": label, "idle": floor_rss(cmd, workdir, args.idle)}
        for label, cmd in floor_variants()
    ]


# -- report -------------------------------------------------------------------------------------


def report(args, results, floor):
    print()
    print(
        "Binaries beside `python -m`, this machine (%d cores, load %s), %s"
        % (os.cpu_count(), loadavg(), time.strftime("%Y-%m-%d"))
    )
    print(
        "  command: .venv/bin/python tools/bench/binaries.py --starts %d --idle %d --rate %d --seconds %d"
        % (args.starts, args.idle, args.rate, args.seconds)
    )
    rows = []
    for r in results:
        rows.append(
            [
                r["label"],
                "-" if r["size"] is None else "%.1f MB" % (r["size"] / 1e6),
                "%.0f" % (r["cold"] * 1000),
                "%.0f" % (r["warm"] * 1000),
                fmt_mb(r["idle"]),
                fmt_mb(r["loaded"]),
                fmt_int(r["received"]),
            ]
        )
    header = [
        "",
        "size",
        "cold start ms",
        "warm start ms",
        "idle RSS",
        "RSS at %d msg/s" % args.rate,
        "received msg/s",
    ]
    print(table(rows, header))
    if floor:
        print()
        print(
            "Floor: %s (asyncio, ssl, SQLite, json, hashlib, a listening socket; no FlowCatalyst)"
            % FLOOR.name
        )
        print(table([[r["label"], fmt_mb(r["idle"])] for r in floor], ["", "idle RSS"]))
    by = {r["label"]: r for r in results}
    print()
    print("Targets:")
    checks = []
    if "fc-edge onefile" in by:
        edge, python = by["fc-edge onefile"], by["python -m flowcatalyst.edge"]
        checks.append(
            (
                "fc-edge onefile <= %d MB" % TARGET_EDGE_MB,
                "%.1f MB" % (edge["size"] / 1e6),
                edge["size"] <= TARGET_EDGE_MB * 1e6,
            )
        )
        for form in ("onefile", "standalone"):
            r = by["fc-edge " + form]
            ratio = r["warm"] / python["warm"]
            checks.append(
                (
                    "fc-edge %s warm start <= %.1fx python -m" % (form, TARGET_WARM_RATIO),
                    "%.2fx" % ratio,
                    ratio <= TARGET_WARM_RATIO,
                )
            )
            checks.append(
                (
                    "fc-edge %s idle RSS <= %d MB" % (form, TARGET_EDGE_IDLE_MB),
                    fmt_mb(r["idle"]),
                    r["idle"] <= TARGET_EDGE_IDLE_MB * 1024,
                )
            )
    if "fc-server onefile" in by:
        server = by["fc-server onefile"]
        checks.append(
            (
                "fc-server onefile <= %d MB" % TARGET_SERVER_MB,
                "%.1f MB" % (server["size"] / 1e6),
                server["size"] <= TARGET_SERVER_MB * 1e6,
            )
        )
    for what, value, ok in checks:
        print("  %-45s %10s  %s" % (what, value, "met" if ok else "NOT MET"))
    if floor and floor[-1]["idle"] > TARGET_EDGE_IDLE_MB * 1024:
        print(
            "  (the floor compiled the same way already holds %s: over the %d MB target before"
            " any FlowCatalyst code)" % (fmt_mb(floor[-1]["idle"]), TARGET_EDGE_IDLE_MB)
        )


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--starts", type=int, default=10)
    p.add_argument("--idle", type=float, default=10)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--only", choices=["edge", "server"])
    p.add_argument("--no-floor", dest="floor", action="store_false", help="skip rss_floor.py")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not sys.platform.startswith("linux"):
        raise SystemExit("bench: Linux only (reads /proc)")
    results = []
    with tempfile.TemporaryDirectory(prefix="fc-bench-binaries-") as workdir:
        for edition in [args.only] if args.only else ["edge", "server"]:
            results += measure(edition, args, workdir)
        floor = measure_floor(args, workdir) if args.floor else []
    report(args, results, floor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
