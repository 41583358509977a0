"""AUTH_MODE NONE, BASIC and TOKEN against a real EdgeApp: public paths stay public, everything
else needs the credentials, and the 401 answers have RS's shapes."""

import base64

import pytest

from flowcatalyst.edge.auth import PUBLIC_PATHS, Auth, same
from flowcatalyst.edge.settings import EdgeSettings
from tests.support.edgeapp import EdgeRunner

PROTECTED = [
    ("GET", "/monitoring"),
    ("GET", "/monitoring/pools"),
    ("PUT", "/monitoring/pools/DEFAULT"),
    ("GET", "/monitoring/circuit-breakers"),
    ("GET", "/monitoring/warnings"),
    ("GET", "/monitoring/in-flight-messages"),
    ("POST", "/api/messages"),
    ("POST", "/messages"),
    ("POST", "/api/seed/messages"),
    ("GET", "/api/dead-letters"),
    ("POST", "/api/test/fast"),
    ("GET", "/api/test/stats"),
    ("GET", "/dashboard"),
    ("GET", "/warnings"),
    ("GET", "/no/such/route"),  # unknown paths do not reveal themselves without credentials
    ("DELETE", "/monitoring/pools"),
    ("OPTIONS", "/monitoring/pools"),
]


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def test_none_mode_leaves_everything_open(tmp_path):
    with EdgeRunner(tmp_path) as edge, edge.client() as c:
        assert c.get("/monitoring").status_code == 200
        assert c.get("/api/dead-letters").status_code == 200


def test_basic_mode(tmp_path):
    with EdgeRunner(tmp_path, auth_mode="BASIC", basic_username="admin", basic_password="s3cret:x") as edge, edge.client() as c:
        for path in sorted(PUBLIC_PATHS):
            assert c.get(path).status_code == 200, path
        for method, path in PROTECTED:
            r = c.request(method, path)
            assert r.status_code == 401, (method, path)
            assert r.text == "Unauthorized"
            assert r.headers["www-authenticate"] == 'Basic realm="FlowCatalyst"'
            assert r.headers["x-auth-mode"] == "BASIC"
        for header in (basic("admin", "wrong"), basic("other", "s3cret:x"), "Bearer s3cret:x", "Basic !!!", basic("admin", "s3cret")):
            assert c.get("/monitoring", headers={"Authorization": header}).status_code == 401, header
        good = {"Authorization": basic("admin", "s3cret:x")}
        assert c.get("/monitoring", headers=good).status_code == 200
        assert c.get("/no/such/route", headers=good).status_code == 404
        assert c.get("/dashboard", headers=good).status_code == 200


def test_token_mode(tmp_path):
    with EdgeRunner(tmp_path, auth_mode="TOKEN", api_token="tok-123") as edge, edge.client() as c:
        for path in sorted(PUBLIC_PATHS):
            assert c.get(path).status_code == 200, path
        for method, path in PROTECTED:
            if path == "/dashboard":
                continue
            r = c.request(method, path)
            assert r.status_code == 401, (method, path)
            assert r.json()["error"] == "unauthorized"
            assert r.headers["www-authenticate"] == 'Bearer realm="FlowCatalyst"'
            assert r.headers["x-auth-mode"] == "TOKEN"
        for header in ("Bearer tok-12", "Bearer tok-1234", "Basic tok-123", "tok-123", "Bearer"):
            r = c.get("/monitoring", headers={"Authorization": header})
            assert r.status_code == 401, header
            assert r.json()["message"]
        good = {"Authorization": "Bearer tok-123"}
        assert c.get("/monitoring", headers=good).status_code == 200
        assert c.get("/monitoring", headers={"Authorization": "bearer tok-123"}).status_code == 200
        # the dashboard page holds no data and a browser cannot send a bearer header for it
        assert c.get("/dashboard").status_code == 200


@pytest.mark.parametrize(
    "settings, headers",
    [
        ({"auth_mode": "TOKEN", "api_token": "tok"}, {"Authorization": "Bearer tok"}),
        ({"auth_mode": "BASIC", "basic_username": "u", "basic_password": "p"}, {"Authorization": basic("u", "p")}),
    ],
)
def test_seeded_messages_reach_the_protected_mock_targets(tmp_path, settings, headers):
    with EdgeRunner(tmp_path, **settings) as edge, edge.client(headers=headers) as c:
        assert c.post("/api/seed/messages", json={"count": 3, "endpoint": "success"}).json()["messagesSent"] == 3
        edge.wait_until(lambda: edge.router.metrics.processed.get(("DEFAULT", "true", "SUCCESS")) == 3, what="3 authenticated deliveries")
        assert c.get("/api/test/stats").json() == {"totalRequests": 3}


def test_constant_time_comparison_helper():
    assert same("abc", "abc")
    assert not same("abc", "abd") and not same("abc", "abcd") and not same("", "x")
    auth = Auth(EdgeSettings(auth_mode="NONE"))
    assert auth.is_public("/monitoring")
