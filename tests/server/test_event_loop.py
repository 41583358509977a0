"""FC_EVENT_LOOP=uvloop: the router runs and delivers under uvloop where it is installed (the
`uvloop` extra, which `make test` installs), and says plainly when it is not."""

import os
import signal
import subprocess
import sys

import httpx
import pytest

from flowcatalyst.server import cli
from tests.support.edgeapp import eventually, pointer
from tests.support.ports import free_port


def _up(port):
    try:
        return httpx.get("http://127.0.0.1:%d/health" % port, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_router_delivers_under_uvloop(tmp_path, target):
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("uvloop is not installed: `make test` installs the uvloop extra")
        pytest.skip("uvloop is not installed (pip install -e '.[uvloop]')")
    cfg = tmp_path / "router.json"
    cfg.write_text(
        '{"processingPools": [{"code": "CORE", "concurrency": 2}, {"code": "HX", "concurrency": 2}],'
        ' "queues": [{"queueName": "q", "queueUri": "sqlite://%s?queue=q", "waitSeconds": 0.2}]}' % (tmp_path / "q.db")
    )
    port = free_port()
    env = dict(os.environ, FC_EVENT_LOOP="uvloop", FC_HTTPX_POOLS="HX", FC_LOG_LEVEL="INFO")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowcatalyst.server", "router", "--config", str(cfg), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        eventually(lambda: _up(port), what="the router's /health")
        for message_id, pool in (("by-core", "CORE"), ("by-httpx", "HX")):
            r = httpx.post("http://127.0.0.1:%d/api/messages" % port, json=pointer(target.url("/ok"), message_id, poolCode=pool))
            assert r.status_code == 200, r.text
        received = target.wait_for(2, "/ok")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert '"event loop: uvloop"' in err  # the loop really was uvloop's
    by_id = {rec.json()["messageId"]: rec for rec in received}
    assert set(by_id) == {"by-core", "by-httpx"}
    assert "accept-encoding" in by_id["by-httpx"].headers and "accept-encoding" not in by_id["by-core"].headers


def test_a_missing_uvloop_is_a_clear_error(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "router.json"
    cfg.write_text('{"processingPools": [], "queues": []}')
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now fails as if it were not installed
    monkeypatch.setenv("FC_EVENT_LOOP", "uvloop")
    assert cli.main(["router", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "FC_EVENT_LOOP=uvloop, but uvloop is not installed (pip install 'flowcatalyst[uvloop]')" in err


def test_an_unknown_event_loop_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("FC_EVENT_LOOP", "trio")
    assert cli.main(["router"]) == 2
    assert "FC_EVENT_LOOP='trio': must be one of ASYNCIO, UVLOOP" in capsys.readouterr().err
