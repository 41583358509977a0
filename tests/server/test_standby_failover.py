"""Leader failover with two real router processes (`python -m flowcatalyst.server router`,
FC_STANDBY_ENABLED=true, lock TTL 3 s, heartbeat 1 s) against the machine's Redis.

Each process consumes its own SQLite queue (an SQLite file is not shared between processes), so
each process's `fc_consumer_polls_total` counts its own polling and nothing else. The test:
A leads; B, started second, stays standby; a message published into B's queue is not delivered
while B is standby; A is killed with SIGKILL; B takes over within one TTL and delivers it; A
comes back and stays standby; B stops with SIGTERM and hands the lock to A at once.

How "never both poll" is established, three ways:
1. Sampled counters: both processes' /metrics are read every ~50 ms throughout. Between two
   consecutive samples, never did both poll counters advance (each instance polls ~10 times a
   second while it leads: its queue waits 0.1 s per poll).
2. Cumulative counters close the gaps between samples: the standby's counter is 0 in every
   sample taken while the leader was alive, including one taken after the leader's exit was
   confirmed; so it had not completed a single poll before, and (polls end within 0.1 s) it had
   not started one in time to overlap.
3. The processes' own log lines: a router creates poll tasks only between "polling resumed" and
   "polling paused" (core/router.py: a paused router creates none), and each line carries a
   millisecond timestamp. The intervals they bound never overlap across processes; the
   standby's first one starts after the leader was sent SIGKILL (same machine, same clock).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx

from flowcatalyst.core.timefmt import parse_iso_utc
from tests.support.edgeapp import eventually, pointer
from tests.support.ports import free_port
from tests.support.redis import delete_keys, require_redis, sync_client, unique_key

TTL = 3.0
HEARTBEAT = 1.0


class RouterProcess:
    def __init__(self, tmp_path, name, instance_id, key, redis_url):
        self.name = name
        self.port = free_port()
        self.log_path = tmp_path / ("%s.log" % name)
        cfg = tmp_path / ("%s.json" % name)
        cfg.write_text(
            json.dumps(
                {
                    "processingPools": [{"code": "P", "concurrency": 2}],
                    "queues": [{"queueName": "q", "queueUri": "sqlite://%s?queue=q" % (tmp_path / ("%s.db" % instance_id)), "waitSeconds": 0.1}],
                }
            )
        )
        env = dict(os.environ)
        for name_ in ("FC_CONFIG_FILE", "FLOWCATALYST_CONFIG_URL", "FC_DB_PATH", "FC_EVENT_LOOP", "FC_HTTP_CLIENT"):
            env.pop(name_, None)
        env.update(
            FC_STANDBY_ENABLED="true",
            FC_STANDBY_REDIS_URL=redis_url,
            FC_STANDBY_LOCK_KEY=key,
            FC_STANDBY_LOCK_TTL=str(TTL),
            FC_STANDBY_HEARTBEAT_INTERVAL=str(HEARTBEAT),
            FC_INSTANCE_ID=instance_id,
            FC_LOG_LEVEL="INFO",
            FC_SHUTDOWN_TIMEOUT="2",
        )
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowcatalyst.server", "router", "--config", str(cfg), "--port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.client = httpx.Client(base_url="http://127.0.0.1:%d" % self.port, timeout=2)

    def get(self, path):
        try:
            return self.client.get(path)
        except httpx.HTTPError:
            return None

    def role(self):
        r = self.get("/monitoring/standby-status")
        return r.json()["role"] if r is not None and r.status_code == 200 else None

    def polls(self):
        """fc_consumer_polls_total of its queue; None when the process does not answer."""
        r = self.get("/metrics")
        if r is None or r.status_code != 200:
            return None
        for line in r.text.splitlines():
            if line.startswith('fc_consumer_polls_total{consumer="q"}'):
                return float(line.split()[-1])
        return 0.0

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.client.close()
        self._log.close()

    def polling_intervals(self, now):
        """[(start, end)] in epoch seconds from the process's log lines; an open one ends at
        `now`."""
        out, since = [], None
        for line in self.log_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("logger") != "router":
                continue
            if record.get("msg") == "polling resumed":
                assert since is None, "%s: resumed twice" % self.name
                since = parse_iso_utc(record["ts"])
            elif record.get("msg") in ("polling paused", "router stopping") and since is not None:
                out.append((since, parse_iso_utc(record["ts"])))
                since = None
        if since is not None:
            out.append((since, now))
        return out


class Sampler:
    """Reads every running instance's poll counter every ~50 ms in a thread."""

    def __init__(self):
        self.instances = {}
        self.samples = []  # (monotonic, {name: polls or None})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.05)

    def sample(self):
        values = {name: inst.polls() for name, inst in list(self.instances.items())}
        self.samples.append((time.monotonic(), values))
        return values

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def assert_never_both(self):
        """No interval between consecutive samples in which two instances' counters rose."""
        for (t0, v0), (t1, v1) in zip(self.samples, self.samples[1:], strict=False):
            rising = [n for n in v1 if v1[n] is not None and v0.get(n) is not None and v1[n] > v0[n]]
            assert len(rising) <= 1, "both %s polled between %.3f and %.3f" % (rising, t0, t1)

    def values_between(self, name, start, end):
        return [v.get(name) for t, v in self.samples if start <= t <= end and v.get(name) is not None]


def test_failover_between_two_router_processes(tmp_path, target):
    redis_url = require_redis()
    key = unique_key("fc:test:failover")
    processes = []
    sampler = Sampler()
    try:
        a = RouterProcess(tmp_path, "a", "a", key, redis_url)
        processes.append(a)
        eventually(lambda: a.role() == "PRIMARY", timeout=15, what="a to lead")
        b = RouterProcess(tmp_path, "b", "b", key, redis_url)
        processes.append(b)
        eventually(lambda: b.role() == "STANDBY", timeout=15, what="b to serve as standby")
        sampler.instances.update(a=a, b=b)
        sampler.start()

        # B is standby: a message in its queue waits, B's counter stays 0, A's rises.
        r = b.client.post("/api/messages", json=pointer(target.url("/ok"), "waiting-for-b", poolCode="P"))
        assert r.status_code == 200, r.text
        phase1 = time.monotonic()
        time.sleep(HEARTBEAT * 2)
        assert target.received() == []
        assert set(sampler.values_between("b", phase1, time.monotonic())) == {0.0}
        a_polls = sampler.values_between("a", phase1, time.monotonic())
        assert a_polls[-1] > a_polls[0]
        status_b = b.get("/monitoring/standby-status").json()
        assert (status_b["standbyEnabled"], status_b["instanceId"], status_b["currentLockHolder"], status_b["redisAvailable"]) == (True, "b", "a", True)

        # Kill the leader.
        killed_wall, killed = time.time(), time.monotonic()
        a.kill()
        assert b.polls() == 0.0  # A is gone, and B has not polled once
        eventually(lambda: b.role() == "PRIMARY", timeout=TTL * 3, what="b to take over")
        (rec,) = target.wait_for(1, "/ok", timeout=TTL * 2)
        assert rec.json() == {"messageId": "waiting-for-b"}
        took = rec.at - killed
        b_start = b.polling_intervals(time.time())[0][0]
        assert b_start > killed_wall  # B began polling after A was killed ...
        assert b_start - killed_wall <= TTL + 0.5  # ... within one TTL (+ scheduling slack)
        assert took <= TTL + 1.5  # and delivered what waited in its queue
        eventually(lambda: (b.polls() or 0) > 3, what="b to poll")

        # A comes back: standby while B leads.
        sampler.instances.pop("a")
        a2 = RouterProcess(tmp_path, "a2", "a", key, redis_url)
        processes.append(a2)
        eventually(lambda: a2.role() == "STANDBY", timeout=15, what="a to come back as standby")
        sampler.instances["a2"] = a2
        back = time.monotonic()
        time.sleep(HEARTBEAT * 2)
        assert set(sampler.values_between("a2", back, time.monotonic())) == {0.0}
        assert a2.get("/monitoring/standby-status").json()["currentLockHolder"] == "b"

        # B stops cleanly: it pauses, releases, and A takes over without waiting for the TTL.
        stopped = time.monotonic()
        assert b.terminate() == 0
        sampler.instances.pop("b")
        eventually(lambda: a2.role() == "PRIMARY", timeout=TTL * 3, what="a to take over")
        assert time.monotonic() - stopped < TTL  # the release, not the expiry
        eventually(lambda: (a2.polls() or 0) > 0, what="a to poll")
        sampler.stop()

        sampler.assert_never_both()
        # A logged no "polling paused": its polling ended when it was killed.
        spans = sorted((s, e, p.name) for p, end in ((a, killed_wall), (b, time.time()), (a2, time.time())) for s, e in p.polling_intervals(end))
        assert [name for _, _, name in spans] == ["a", "b", "a2"]
        for (_, e1, n1), (s2, _, n2) in zip(spans, spans[1:], strict=False):
            assert s2 >= e1, "%s polled from %s while %s polled until %s" % (n2, s2, n1, e1)
        assert len(sampler.samples) > 50
    finally:
        sampler.stop()
        for p in processes:
            p.close()
        delete_keys(key)
        logs = {p.name: p.log_path.read_text()[-3000:] for p in processes if p.log_path.exists()}
        if sys.exc_info()[0] is not None:
            for name, text in logs.items():
                sys.stderr.write("--- %s log ---\n%s\n" % (name, text))
    assert sync_client().get(key) is None


def test_a_standby_router_without_redis_waits_and_serves_health(tmp_path):
    """Redis unreachable: the router starts, serves health and metrics, does not poll, and
    reports the outage in /monitoring/standby-status and its warnings."""
    key = unique_key("fc:test:noredis")
    p = RouterProcess(tmp_path, "lonely", "lonely", key, "redis://127.0.0.1:%d" % free_port())
    try:
        eventually(lambda: p.get("/health") is not None, timeout=15, what="the router to start")
        eventually(lambda: p.get("/monitoring/standby-status").json()["redisAvailable"] is False and p.get("/monitoring/standby-status").json()["hasWarning"], what="the outage")
        status = p.get("/monitoring/standby-status").json()
        assert (status["role"], status["currentLockHolder"], status["lastSuccessfulRefresh"]) == ("STANDBY", None, None)
        assert p.get("/health").status_code == 200 and p.get("/health/ready").status_code == 200
        assert p.polls() == 0.0
        warnings = p.get("/warnings").json()
        assert any("Redis unreachable" in w["message"] for w in warnings)
        assert p.terminate() == 0
    finally:
        p.close()
