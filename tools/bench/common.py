"""What the benchmarks share: the sink process, wrk for its ceiling, CPU and memory readings,
and report formatting."""

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SINK = HERE / "sink.py"
WRK_BODY = '{"messageId":"m-0123456789ab"}'  # 30 bytes, the size of the mediator's body
WRK_INSTALL_HINT = "install it with `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS); `make bench` does this itself when run as root on a machine with apt"


# -- processes ----------------------------------------------------------------------------------


def cpu_of(pid):
    """User + system CPU seconds of process `pid` (Linux /proc), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sink:
    """tools/bench/sink.py in its own process; `latency=True` makes it record, per request,
    now minus the publish time the request's JSON payload carries as "t"."""

    def __init__(self, latency=False):
        self.latency = latency
        self.proc = None
        self.port = None
        self.loop = None
        self.requests = None

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(SINK), "--port", "0"] + (["--latency"] if self.latency else []), stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        m = re.match(r"PORT (\d+)", line)
        if not m:
            self.stop()
            raise SystemExit("bench: the sink did not start (said %r)" % line)
        self.port = int(m.group(1))
        probe = subprocess.run(
            [sys.executable, "-c", "import uvloop"], capture_output=True
        )
        self.loop = "uvloop" if probe.returncode == 0 else "asyncio (uvloop not installed)"
        return self

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook" % self.port

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cpu(self):
        return cpu_of(self.proc.pid) if self.alive() else None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        m = re.search(r"REQUESTS (\d+)", out or "")
        self.requests = int(m.group(1)) if m else None
        self.proc = None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Service:
    """A FlowCatalyst process under test: `cmd` run from the repository with `env`, its stderr
    in `log_path`; `wait_ready` polls its /health, `stop` reports its peak RSS and CPU."""

    def __init__(self, name, cmd, env, log_path, port, cwd):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stderr=self.log, cwd=str(cwd), env=env)
        self.url = "http://127.0.0.1:%d" % port

    async def wait_ready(self, client, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("bench: the %s exited with %s; see %s" % (self.name, self.proc.returncode, self.log_path))
            try:
                if (await client.send("GET", self.url + "/health", {}, b"", 2)).status == 200:
                    return
            except Exception:  # not listening yet
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("bench: the %s did not answer /health within %d s" % (self.name, timeout))

    def stop(self):
        rss = peak_rss_kb(self.proc.pid)
        cpu = cpu_of(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        return rss, cpu


async def sink_stats(client, sink, reset=False):
    response = await client.send("GET", "http://127.0.0.1:%d/__stats%s" % (sink.port, "?reset=1" if reset else ""), {}, b"", 10)
    return json.loads(response.body)


async def wait_delivered(client, sink, count, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = await sink_stats(client, sink)
        if stats["requests"] >= count:
            return stats
        await asyncio.sleep(0.05)
    return await sink_stats(client, sink)


# -- wrk ----------------------------------------------------------------------------------------


def _ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url, connections, duration, threads, workdir):
    """{"rps", "p50_ms", "p99_ms", "command"} or {"error": why}."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"error": "wrk is not installed: " + WRK_INSTALL_HINT}
    script = Path(workdir) / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.body = \'%s\'\nwrk.headers["Content-Type"] = "application/json"\n'
        % WRK_BODY
    )
    base = [wrk, "-t%d" % threads, "-c%d" % connections, "-s", str(script), "--latency"]
    subprocess.run(base + ["-d1s", url], capture_output=True, text=True)  # warm-up
    cmd = base + ["-d%ds" % duration, url]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"Requests/sec:\s+([\d.]+)", proc.stdout)
    if proc.returncode != 0 or not m:
        return {"error": "wrk failed: %s" % (proc.stderr or proc.stdout).strip()[-300:]}
    out = {"rps": float(m.group(1)), "command": " ".join(["wrk"] + cmd[1:]).replace(str(script), "post.lua")}
    for q in ("50", "99"):
        lm = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % q, proc.stdout, re.M)
        out["p%s_ms" % q] = _ms(*lm.groups()) if lm else None
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", proc.stdout)
    out["errors"] = errors.group(0) if errors else None
    return out


# -- formatting ---------------------------------------------------------------------------------


def fmt_int(x):
    return "-" if x is None else "{:,.0f}".format(x)


def fmt_ms(x):
    if x is None:
        return "-"
    return "%.1f" % x if x >= 10 else "%.2f" % x


def fmt_mb(kb):
    return "-" if kb is None else "%.1f MB" % (kb / 1024)


def fmt_pct(x):
    return "-" if x is None else "%.0f%%" % (100 * x)


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    out = []
    for n, r in enumerate([header] + rows):
        cells = []
        for i, cell in enumerate(r):
            cells.append(str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i]))
        out.append("  " + "  ".join(cells))
        if n == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(out)


def peak_rss_kb(pid):
    """VmHWM of a running process in kB (Linux), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "unknown"
