"""The edge app as a whole: where its config comes from, queue URIs, HTTPS."""

import json
import ssl

import httpx
import pytest

from flowcatalyst.core.config import ConfigError
from flowcatalyst.edge.app import EdgeApp, StartupError, resolve_queue_uri
from flowcatalyst.edge.settings import EdgeSettings
from tests.support.edgeapp import EdgeRunner, eventually, pointer


def config(pools, queues):
    return {"processingPools": pools, "queues": queues}


@pytest.mark.parametrize(
    "uri, name, expected",
    [
        (None, "main", ("/db/edge.db", "main")),
        ("orders", "orders", ("/db/edge.db", "orders")),
        ("sqlite:///var/lib/fc/other.db?queue=q1", "x", ("/var/lib/fc/other.db", "q1")),
        ("sqlite://relative/other.db", "x", ("relative/other.db", "x")),
    ],
)
def test_queue_uris(uri, name, expected):
    assert resolve_queue_uri(uri, name, "/db/edge.db") == expected


@pytest.mark.parametrize("uri", ["https://sqs.eu-west-1.amazonaws.com/1/q.fifo", "nats://127.0.0.1:4222", "sqlite://?queue=x"])
def test_queue_uris_the_edge_cannot_serve(uri):
    with pytest.raises(ConfigError):
        resolve_queue_uri(uri, "q", "/db/edge.db")


def test_a_queue_in_another_database_file(tmp_path, target):
    other = tmp_path / "other.db"
    cfg = config([{"code": "P", "concurrency": 2}], [{"queueName": "main"}, {"queueName": "side", "queueUri": "sqlite://%s?queue=side" % other}])
    with EdgeRunner(tmp_path, config=cfg) as edge, edge.client() as c:
        assert c.post("/api/messages", json=dict(pointer(target.url("/ok"), "a", poolCode="P"), queue="side")).status_code == 200
        target.wait_for(1, "/ok")
    import sqlite3

    assert sqlite3.connect(str(other)).execute("SELECT COUNT(*) FROM queue_dead_letters").fetchall() == [(0,)]  # its own file


def test_config_from_a_platform_is_applied_without_restart(tmp_path, target):
    served = {"config": config([{"code": "P", "concurrency": 2}], [{"queueName": "main", "queueUri": "main"}])}
    target.on("/api/config/router", lambda rec: (200, {}, served["config"]))
    with EdgeRunner(tmp_path, config_urls=target.url("/api/config/router"), config_interval=0.2) as edge, edge.client() as c:
        assert [p["pool_code"] for p in c.get("/monitoring/pools").json()] == ["P"]
        pool = edge.run(lambda: edge.router.pools["P"])
        served["config"] = config(
            [{"code": "P", "concurrency": 7}, {"code": "NEW", "concurrency": 1}],
            [{"queueName": "main", "queueUri": "main"}, {"queueName": "second", "queueUri": "second"}],
        )
        eventually(lambda: {p["pool_code"]: p["concurrency"] for p in c.get("/monitoring/pools").json()} == {"P": 7, "NEW": 1}, what="the new config")
        assert edge.run(lambda: edge.router.pools["P"]) is pool  # resized in place
        assert c.post("/api/messages", json=dict(pointer(target.url("/ok"), "via-second", poolCode="NEW"), queue="second")).status_code == 200
        target.wait_for(1, "/ok")


def test_an_unreachable_platform_at_start_runs_the_saved_config(tmp_path, target, monkeypatch):
    served = config([{"code": "SAVED", "concurrency": 3}], [{"queueName": "main", "queueUri": "main"}])
    target.on("/cfg", lambda rec: (200, {}, served))
    with EdgeRunner(tmp_path, config_urls=target.url("/cfg")) as edge, edge.client() as c:
        assert [p["pool_code"] for p in c.get("/monitoring/pools").json()] == ["SAVED"]
    target.on("/cfg", lambda rec: (503, {}, {"error": "down"}))
    target.reset()
    with EdgeRunner(tmp_path, config_urls=target.url("/cfg")) as edge, edge.client() as c:
        assert [p["pool_code"] for p in c.get("/monitoring/pools").json()] == ["SAVED"]  # at once
        assert len(target.received("/cfg")) == 1
        assert any("running the saved config" in w["message"] for w in c.get("/monitoring/warnings").json())
    monkeypatch.setattr(EdgeApp, "config_retry_delay", 0.01)
    with pytest.raises(StartupError, match="no earlier run saved one"):
        EdgeRunner(tmp_path, name="fresh", config_urls=target.url("/cfg")).start()
    assert len(target.received("/cfg")) == 1 + EdgeApp.config_attempts  # the full schedule


def test_https_api(tmp_path, tls_files, target):
    cert, key = tls_files
    with EdgeRunner(tmp_path, tls_cert=cert, tls_key=key) as edge:
        url = "https://127.0.0.1:%d" % edge.port
        with httpx.Client(verify=ssl.create_default_context(cafile=cert), timeout=10) as c:
            assert c.get(url + "/health").json()["status"] == "UP"
            assert c.post(url + "/api/messages", json=pointer(target.url("/ok"), "tls-1")).status_code == 200
        target.wait_for(1, "/ok")
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health", timeout=5)  # not trusted without the certificate


def test_a_second_edge_on_the_same_database_is_refused(tmp_path):
    with EdgeRunner(tmp_path):
        with pytest.raises(Exception, match="in use by another process"):
            EdgeApp(EdgeSettings(db_path=str(tmp_path / "edge.db"), port=0))


def test_the_default_config_routes_pointers_without_a_pool_to_DEFAULT(tmp_path, target):
    with EdgeRunner(tmp_path) as edge, edge.client() as c:
        assert c.post("/api/messages", json=pointer(target.url("/ok"), "m1")).status_code == 200
        target.wait_for(1, "/ok")
        assert [p["pool_code"] for p in c.get("/monitoring/pools").json()] == ["DEFAULT"]
        assert json.loads(c.get("/api/config").text)["queues"][0]["queueName"] == "default"
