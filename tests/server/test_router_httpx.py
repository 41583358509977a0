"""The server's router delivering through httpx, end to end: a RouterServerApp on an SQLite
queue, messages published over its API, delivered to real targets on loopback. Which client
sent a request is visible on the wire: httpx sends `Accept-Encoding`, the core client does not.
"""

import pytest

from flowcatalyst.core.httpclient import HttpClient
from flowcatalyst.edge.settings import SettingsError
from flowcatalyst.server.app import RouterServerApp
from flowcatalyst.server.httpxtransport import HttpxTransport
from flowcatalyst.server.settings import RouterServerSettings
from tests.support.edgeapp import EdgeRunner, pointer
from tests.support.h2target import H2Target


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "FC_CA_FILE"):
        monkeypatch.delenv(name, raising=False)


def router(tmp_path, pools, **settings):
    config = {
        "processingPools": [{"code": code, "concurrency": 4} for code in pools],
        "queues": [{"queueName": "q", "queueUri": "sqlite://%s?queue=q" % (tmp_path / "q.db"), "waitSeconds": 0.2}],
    }
    return EdgeRunner(tmp_path, config=config, app_class=RouterServerApp, settings_class=RouterServerSettings, **settings)


def transports(runner):
    """pool code -> the transport its mediator sends through."""
    return runner.run(lambda: {code: pool.mediator.transport for code, pool in runner.router.pools.items()})


def publish(client, target_url, message_id, pool, **extra):
    r = client.post("/api/messages", json=pointer(target_url, message_id, poolCode=pool, **extra))
    assert r.status_code == 200, r.text


def sender(rec):
    return "httpx" if "accept-encoding" in rec.headers else "core"


def test_FC_HTTP_CLIENT_httpx_gives_every_pool_its_own_httpx_client(tmp_path, target):
    with router(tmp_path, ["A", "B"], http_client="HTTPX") as r, r.client() as c:
        publish(c, target.url("/ok"), "via-a", "A")
        publish(c, target.url("/ok"), "via-b", "B")
        received = target.wait_for(2, "/ok")
        by_pool = transports(r)
    assert {type(t) for t in by_pool.values()} == {HttpxTransport}
    assert by_pool["A"] is not by_pool["B"]  # one client per pool (router spec §4.3)
    assert sorted(rec.json()["messageId"] for rec in received) == ["via-a", "via-b"]
    assert {sender(rec) for rec in received} == {"httpx"}
    assert all(t._client is None for t in by_pool.values())  # closed when the router stopped


def test_FC_HTTPX_POOLS_picks_pools_by_code_or_pattern(tmp_path, target):
    pools = ["PARTNER-A", "PARTNER-B", "SPECIAL", "LOCAL", "OTHER"]
    with router(tmp_path, pools, httpx_pools=("PARTNER-*", "SPECIAL")) as r, r.client() as c:
        for code in pools + ["UNKNOWN"]:  # UNKNOWN goes to DEFAULT-POOL, created on first use
            publish(c, target.url("/ok"), "to-" + code, code)
        received = target.wait_for(6, "/ok")
        by_pool = transports(r)
    assert set(by_pool) == set(pools) | {"DEFAULT-POOL"}
    httpx_pools = {code for code, t in by_pool.items() if isinstance(t, HttpxTransport)}
    assert httpx_pools == {"PARTNER-A", "PARTNER-B", "SPECIAL"}
    assert len({id(by_pool[code]) for code in httpx_pools}) == 3
    core = [by_pool[code] for code in ("LOCAL", "OTHER", "DEFAULT-POOL")]
    assert isinstance(core[0], HttpClient) and core[0] is core[1] is core[2]  # the others share the core client
    seen = {rec.json()["messageId"]: sender(rec) for rec in received}
    assert seen == {
        "to-PARTNER-A": "httpx",
        "to-PARTNER-B": "httpx",
        "to-SPECIAL": "httpx",
        "to-LOCAL": "core",
        "to-OTHER": "core",
        "to-UNKNOWN": "core",
    }


def test_without_httpx_every_pool_shares_the_core_client(tmp_path, target):
    with router(tmp_path, ["A", "B"]) as r, r.client() as c:
        publish(c, target.url("/ok"), "m", "A")
        (rec,) = target.wait_for(1, "/ok")
        by_pool = transports(r)
        shared = r.run(lambda: r.router.mediator)
    assert by_pool["A"] is by_pool["B"] is shared.transport and isinstance(shared.transport, HttpClient)
    assert sender(rec) == "core"


def test_signed_delivery_over_http2_end_to_end(tmp_path, tls_files, monkeypatch):
    monkeypatch.setenv("FC_CA_FILE", tls_files[0])  # the transport trusts the test CA
    with H2Target(*tls_files) as server:
        with router(tmp_path, ["H2"], http_client="HTTPX", http2=True) as r, r.client() as c:
            publish(c, server.url("/ok"), "over-h2", "H2", signingSecret="s3cret", authToken="tok")
            (rec,) = server.wait_for(1, "/ok")
            delivered = r.wait_until(lambda: r.router.pools["H2"].metrics.total_success == 1, what="the delivery to be acked")
    assert delivered
    assert rec.http_version == "2" and rec.method == "POST"
    assert rec.body == b'{"messageId":"over-h2"}'
    assert rec.headers["authorization"] == "Bearer tok"
    assert len(rec.headers["x-flowcatalyst-signature"]) == 64 and rec.headers["x-flowcatalyst-timestamp"].endswith("Z")


def test_httpx_settings():
    s = RouterServerSettings.parse([], {"FC_HTTPX_POOLS": " PARTNER-* , SPECIAL,", "FC_HTTP2": "true"}).validate()
    assert (s.http_client, s.httpx_pools, s.http2) == ("CORE", ("PARTNER-*", "SPECIAL"), True)
    with pytest.raises(SettingsError, match="FC_HTTPX_POOLS=','"):
        RouterServerSettings.parse([], {"FC_HTTPX_POOLS": ","})
    with pytest.raises(SettingsError, match="FC_HTTP2=true needs FC_HTTP_CLIENT=httpx or FC_HTTPX_POOLS"):
        RouterServerSettings.parse([], {"FC_HTTP2": "yes"}).validate()
    s = RouterServerSettings.parse([], {"FC_HTTP_CLIENT": "HttpX", "FC_HTTP_TIMEOUT": "900", "FC_HTTP_CONNECT_TIMEOUT": "30"}).validate()
    assert (s.http_client, s.request_timeout, s.connect_timeout) == ("HTTPX", 900.0, 30.0)


def test_the_httpx_pools_get_the_timeouts_of_the_settings(tmp_path):
    with router(tmp_path, ["A"], http_client="HTTPX", request_timeout=900.0, connect_timeout=30.0) as r:
        t = transports(r)["A"]
    assert (t.request_timeout, t.connect_timeout, t.http2) == (900.0, 30.0, False)
