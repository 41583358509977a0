"""`python -m flowcatalyst.edge` as a process: it serves the API, stops cleanly on SIGTERM, and
refuses a bad config file with exit status 2 and what is wrong."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from tests.support.ports import free_port


def start(tmp_path, *args):
    env = dict(os.environ, FC_LOG_LEVEL="INFO")
    for name in ("FC_CONFIG_FILE", "FLOWCATALYST_CONFIG_URL", "AUTH_MODE", "FC_API_HOST", "FC_API_PORT", "FC_DB_PATH"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "flowcatalyst.edge", "--db", str(tmp_path / "cli.db"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serves_health_and_exits_0_on_sigterm(tmp_path):
    port = free_port()
    proc = start(tmp_path, "--port", str(port))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                r = httpx.get("http://127.0.0.1:%d/health" % port, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the edge did not start: %s" % proc.communicate()[1]) from None
                time.sleep(0.05)
        assert r.json()["status"] == "UP"
        assert httpx.get("http://127.0.0.1:%d/monitoring/health" % port).status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert '"edge stopped"' in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_bad_config_file_exits_2_with_path_field_and_reason(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"processingPools": [{"code": "A", "concurrency": -1}], "queues": [{"queueName": "q"}]}))
    proc = start(tmp_path, "--config", str(path), "--port", str(free_port()))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert str(path) in err
    assert "processingPools[0].concurrency" in err
    assert "must be >= 0" in err
