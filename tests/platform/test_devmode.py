"""The developer monolith as a newcomer meets it: `python -m flowcatalyst.server` with nothing
configured, in an empty directory. Its banner's copy-paste example is run as printed: the
subscription, the event, and the signed webhook at the built-in receiver."""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.edgeapp import eventually
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def start_dev(cwd, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FC_", "FLOWCATALYST_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "flowcatalyst.server", *args, "--port", str(free_port())],
        cwd=str(cwd),
        env=dict(env, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_banner(proc, timeout=30):
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Stop with Ctrl-C"):
            return "".join(lines)
    raise AssertionError("no banner; the server said:\n" + "".join(lines))


def run_curl(command):
    """Run one `curl -s URL [-H ...] [-d ...]` line of the banner with httpx."""
    words = shlex.split(command)
    assert words[:2] == ["curl", "-s"], command
    url, headers, data = words[2], {}, None
    rest = iter(words[3:])
    for word in rest:
        if word == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data = next(rest)
    if data is None:
        return httpx.get(url)
    return httpx.post(url, content=data, headers=headers)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_dev_monolith_banner_example_works_as_printed(tmp_path):
    proc = start_dev(tmp_path)
    try:
        banner = read_banner(proc)
        commands = [line.strip() for line in banner.splitlines() if line.strip().startswith("curl ")]
        assert len(commands) == 4
        subscription, event, webhooks, jobs = commands
        assert run_curl(subscription).status_code == 201
        results = run_curl(event).json()["results"]
        assert results[0]["status"] == "SUCCESS"

        arrived = eventually(lambda: run_curl(webhooks).json(), what="the webhook at the receiver")
        assert arrived[0]["body"] == {"orderId": "o-1"}
        assert arrived[0]["signatureValid"] is True
        listed = eventually(
            lambda: [j for j in run_curl(jobs).json() if j["status"] == "COMPLETED"],
            what="the completed job in the list",
        )
        assert listed[0]["eventId"] == results[0]["id"]
        base = re.search(r"dashboard\s+(http://\S+)/dashboard", banner).group(1)
        assert httpx.get(base + "/dashboard").status_code == 200
        assert httpx.get(base + "/api/openapi.json").json()["openapi"].startswith("3.")
    finally:
        stop(proc)
    # it made its store, queue and app key in ./.flowcatalyst, the key readable by its owner only
    data = tmp_path / ".flowcatalyst"
    assert (data / "platform.db").exists() and (data / "queue.db").exists()
    assert (data / "app-key").stat().st_mode & 0o077 == 0


def test_dev_monolith_restarts_on_its_own_data(tmp_path):
    """A second start finds its schema and app key: the subscription is still there."""
    for round in (1, 2):
        proc = start_dev(tmp_path, "dev")
        try:
            banner = read_banner(proc)
            base = re.search(r"dashboard\s+(http://\S+)/dashboard", banner).group(1)
            if round == 1:
                created = httpx.post(
                    base + "/api/subscriptions",
                    json={
                        "code": "kept",
                        "name": "kept",
                        "endpoint": base + "/dev/webhooks",
                        "eventTypes": [{"eventTypeCode": "a:b:c:d"}],
                    },
                )
                assert created.status_code == 201, created.text
            else:
                listed = httpx.get(base + "/api/subscriptions").json()
                assert [s["code"] for s in listed["subscriptions"]] == ["kept"]
        finally:
            stop(proc)
