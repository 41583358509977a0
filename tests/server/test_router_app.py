"""The server's router application: queue URIs, settings, the command, and configuration from a
platform that changes while the router runs (SQLite queues here; SQS and NATS have their own
tests)."""

import asyncio
import os
import signal
import subprocess
import sys

import httpx
import pytest

from flowcatalyst.core.config import ConfigError
from flowcatalyst.edge.settings import SettingsError
from flowcatalyst.server.app import RouterServerApp
from flowcatalyst.server.queues import NATS, SQLITE, SQS, queue_kind
from flowcatalyst.server.settings import RouterServerSettings
from tests.support.edgeapp import EdgeRunner, eventually, pointer
from tests.support.ports import free_port


def server(tmp_path, **settings):
    settings.setdefault("db_path", str(tmp_path / "router.db"))
    return EdgeRunner(tmp_path, app_class=RouterServerApp, settings_class=RouterServerSettings, **settings)


@pytest.mark.parametrize(
    "uri, environ, kind",
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo", {}, SQS),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", {}, SQS),
        ("http://127.0.0.1:4566/000000000000/q", {"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:4566"}, SQS),
        ("http://localhost:5000/123/q", {"AWS_ENDPOINT_URL": "http://localhost:5000/"}, SQS),
        ("nats://127.0.0.1:4222?stream=S&consumer=c", {}, NATS),
        ("sqlite:///var/lib/fc/q.db?queue=a", {}, SQLITE),
        ("orders", {}, SQLITE),
        (None, {}, SQLITE),
    ],
)
def test_queue_uris_select_the_adapter(uri, environ, kind):
    assert queue_kind(uri, environ) == kind


@pytest.mark.parametrize(
    "uri, environ",
    [
        ("https://example.com/q", {}),
        ("http://127.0.0.1:4567/000/q", {"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:4566"}),
        ("amqp://guest@localhost/q", {}),
    ],
)
def test_queue_uris_the_router_cannot_serve(uri, environ):
    with pytest.raises(ConfigError):
        queue_kind(uri, environ)


def test_settings():
    s = RouterServerSettings.parse([], {}).validate()
    assert (s.http_client, s.http2, s.event_loop, s.standby_enabled, s.standby_lock_key) == ("CORE", False, "ASYNCIO", False, "fc:router:leader")
    assert s.instance_id and s.db_path is None
    s = RouterServerSettings.parse(["--port", "9000"], {"FC_HTTP_CLIENT": "httpx", "FC_HTTP2": "true", "FC_STANDBY_ENABLED": "1"}).validate()
    assert (s.port, s.http_client, s.http2, s.standby_enabled) == (9000, "HTTPX", True, True)
    with pytest.raises(SettingsError, match="FC_HTTP2=true needs FC_HTTP_CLIENT=httpx"):
        RouterServerSettings.parse([], {"FC_HTTP2": "true"}).validate()
    with pytest.raises(SettingsError, match="FC_STANDBY_ENABLED='maybe': must be true or false"):
        RouterServerSettings.parse([], {"FC_STANDBY_ENABLED": "maybe"})
    with pytest.raises(SettingsError, match="shorter than FC_STANDBY_LOCK_TTL"):
        RouterServerSettings.parse([], {"FC_STANDBY_HEARTBEAT_INTERVAL": "30"}).validate()


def run_cli(*args, env=None, timeout=30):
    environ = dict(os.environ, FC_LOG_LEVEL="WARN")
    for name in ("FC_CONFIG_FILE", "FLOWCATALYST_CONFIG_URL", "FC_DB_PATH"):
        environ.pop(name, None)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "flowcatalyst.server", *args], capture_output=True, text=True, timeout=timeout, env=environ)


def test_the_command():
    assert "router" in run_cli("--help").stdout
    assert "FC_HTTP_CLIENT" in run_cli("router", "--help").stdout
    p = run_cli("router")
    assert p.returncode == 2 and "no configuration: set FC_CONFIG_FILE" in p.stderr
    p = run_cli("bogus")
    assert p.returncode == 2 and "unknown command 'bogus'" in p.stderr
    p = run_cli("platform", env={"FC_AUTH": "none"})
    assert p.returncode == 2 and "FLOWCATALYST_APP_KEY is required" in p.stderr


def test_a_bad_queue_uri_in_the_config_file_is_refused_with_where(tmp_path):
    cfg = tmp_path / "router.json"
    cfg.write_text('{"processingPools": [], "queues": [{"queueName": "q", "queueUri": "https://example.com/q"}]}')
    p = run_cli("router", "--config", str(cfg))
    assert p.returncode == 2
    assert "queues[0].queueUri" in p.stderr and "not an SQS queue URL" in p.stderr


def test_a_bare_queue_name_needs_a_database(tmp_path):
    cfg = tmp_path / "router.json"
    cfg.write_text('{"processingPools": [], "queues": [{"queueName": "q"}]}')
    p = run_cli("router", "--config", str(cfg))
    assert p.returncode == 2 and "FC_DB_PATH" in p.stderr


def test_sigterm_drains_and_exits_0(tmp_path, target):
    cfg = tmp_path / "router.json"
    cfg.write_text('{"processingPools": [{"code": "P", "concurrency": 2}], "queues": [{"queueName": "q", "queueUri": "sqlite://%s?queue=q"}]}' % (tmp_path / "q.db"))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowcatalyst.server", "router", "--config", str(cfg), "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, FC_LOG_LEVEL="INFO"),
    )
    try:
        eventually(lambda: _get(port, "/health"), what="the router's /health")
        r = httpx.post("http://127.0.0.1:%d/api/messages" % port, json=pointer(target.url("/slow/600"), "m1", poolCode="P"))
        assert r.status_code == 200
        target.wait_for(1, prefix="/slow/")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert '"router stopped"' in err and "abandoning" not in err


def test_config_from_a_platform_changes_pools_and_queues_in_place(tmp_path, target):
    def cfg(pools, queues):
        return {"processingPools": pools, "queues": [{"queueName": q, "queueUri": "sqlite://%s?queue=%s" % (tmp_path / "q.db", q)} for q in queues]}

    served = {"config": cfg([{"code": "A", "concurrency": 2}, {"code": "B", "concurrency": 1}], ["one", "two"])}
    target.on("/api/config/router", lambda rec: (200, {}, served["config"]))

    async def slow(rec):
        await asyncio.sleep(0.8)
        return 200, {}, {"ack": True}

    target.on("/slow-one", slow)
    with server(tmp_path, config_urls=target.url("/api/config/router"), config_interval=0.2) as router, router.client() as c:
        pools = lambda: {p["pool_code"]: p["concurrency"] for p in c.get("/monitoring/pools").json()}  # noqa: E731
        queues = lambda: sorted(q["queue_identifier"] for q in c.get("/monitoring/queues").json())  # noqa: E731
        assert pools() == {"A": 2, "B": 1} and queues() == ["one", "two"]
        pool_a = router.run(lambda: router.router.pools["A"])
        # a message in flight on queue "two" when "two" is removed must still be delivered
        assert c.post("/api/messages", json=dict(pointer(target.url("/slow-one"), "in-flight", poolCode="A"), queue="two")).status_code == 200
        target.wait_for(1, "/slow-one")
        served["config"] = cfg([{"code": "A", "concurrency": 5}, {"code": "C", "concurrency": 3}], ["one", "three"])  # A resized, B removed, C added; two removed, three added
        eventually(lambda: pools() == {"A": 5, "C": 3} and queues() == ["one", "three"], what="the changed config")
        assert router.run(lambda: router.router.pools["A"]) is pool_a  # resized in place, not recreated
        eventually(lambda: router.run(lambda: router.router.pools["A"].metrics.total_success) == 1, what="the in-flight message to finish")
        assert c.post("/api/messages", json=dict(pointer(target.url("/ok"), "via-three", poolCode="C"), queue="three")).status_code == 200
        target.wait_for(1, "/ok")
        unchanged = router.run(lambda: router.app.config_sync.current)
        import time

        time.sleep(0.5)  # a few syncs of the same config
        assert router.run(lambda: router.app.config_sync.current) is unchanged  # a no-op
    import sqlite3

    con = sqlite3.connect(str(tmp_path / "q.db"))
    assert con.execute("SELECT COUNT(*) FROM queue_messages").fetchall() == [(0,)]  # the removed queue's message was acked


def _get(port, path):
    try:
        return httpx.get("http://127.0.0.1:%d%s" % (port, path), timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_nats_queue_takes_its_visibility_timeout_as_ack_wait(tmp_path):
    from flowcatalyst.core.config import QueueConfig

    app = RouterServerApp(RouterServerSettings(db_path=str(tmp_path / "r.db")))
    options = {"max_receive_count": 10, "dedup_window": 300, "wait_seconds": 20, "max_messages": None}
    q = app.make_consumer(QueueConfig("nats://127.0.0.1:4222?stream=S1", "n", visibility_timeout=45), options)
    assert q.settings.ack_wait == 45 and q.identifier == "S1/fc-router"
    q = app.make_consumer(QueueConfig("nats://127.0.0.1:4222?stream=S1&ack-wait-secs=7", "n", visibility_timeout=45), options)
    assert q.settings.ack_wait == 7  # the URI says so
    app.sqlite.close()


def test_every_setting_is_in_help_and_in_the_docs():
    from flowcatalyst.server.settings import ROUTER

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    docs = open(os.path.join(root, "docs", "server.md")).read()
    text = RouterServerSettings.help_text("fc-server")
    for _, flag, env, _, _, _ in ROUTER:
        assert env in text and env in docs, env
        if flag:
            assert flag in text and flag in docs, flag
