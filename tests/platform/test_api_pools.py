"""Dispatch pools over HTTP (spec/platform.md §1.6, §3.6), on SQLite and PostgreSQL, with JWT
auth: CRUD, validation naming each field, tenants, 404/409, the audit trail, and a change
reaching the router inside the same server.

The module-scoped server and the token helpers here are shared by test_api_connections.py
and test_api_audit.py."""

import itertools
import re

import httpx
import jwt
import pytest

from tests.support.edgeapp import eventually
from tests.support.platform import PlatformRunner
from tests.support.postgres import FreshDatabase

SECRET = "test-jwt-secret-0123456789abcdef"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
_numbers = itertools.count()


def unique(prefix):
    """A code no other test of the module uses."""
    return "%s-%d" % (prefix, next(_numbers))


def token(sub="anchor-user", scope="ANCHOR", clients=(), roles=(), permissions=()):
    claims = {
        "sub": sub,
        "exp": 4102444800,  # 2100
        "scope": scope,
        "clients": list(clients),
        "roles": list(roles),
        "permissions": list(permissions),
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


def client_for(server, bearer):
    return httpx.Client(
        base_url=server.url(""), timeout=10, headers={"Authorization": "Bearer " + bearer}
    )


def start_server(request, tmp_path_factory):
    """A platform server with JWT auth on the parametrised database, for a whole module."""
    tmp = tmp_path_factory.mktemp(request.param)
    db = FreshDatabase() if request.param == "postgres" else None
    url = db.url if db else "sqlite://%s" % (tmp / "platform.db")
    server = PlatformRunner(tmp, url, auth="JWT", jwt_secret=SECRET).start()

    def finish():
        server.stop()
        if db is not None:
            db.drop()

    request.addfinalizer(finish)
    return server


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    return start_server(request, tmp_path_factory)


@pytest.fixture(scope="module")
def anchor(server):
    with client_for(server, token()) as c:
        yield c


def assert_stamps(body):
    assert STAMP.match(body.pop("createdAt")) and STAMP.match(body.pop("updatedAt"))
    return body


def create(anchor, **body):
    reply = anchor.post("/api/dispatch-pools", json=dict({"name": "A pool"}, **body))
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def audit_operations(server, entity_id):
    rows = server.query(
        "SELECT operation, principal_id FROM aud_logs WHERE entity_id = ? ORDER BY performed_at, id",
        (entity_id,),
    )
    return [(r["operation"], r["principal_id"]) for r in rows]


def add_subscription(server, code, pool_id=None, connection_id=None):
    """A subscription row that uses a pool or connection (the subscriptions API is another
    module's)."""

    async def insert(tx):
        await tx.execute(
            "INSERT INTO msg_subscriptions (id, code, name, target, dispatch_pool_id, connection_id,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                "sub_" + code.upper()[:13],
                code,
                code,
                "http://127.0.0.1:9/hook",
                pool_id,
                connection_id,
                "2026-01-01T00:00:00.000000Z",
                "2026-01-01T00:00:00.000000Z",
            ),
        )

    server.write(insert)


def test_create_read_update_delete(server, anchor):
    reply = anchor.post(
        "/api/dispatch-pools",
        json={"code": "crud", "name": " CRUD pool ", "rateLimit": 120, "concurrency": 5},
    )
    assert reply.status_code == 201
    id = reply.json()["id"]
    assert reply.json() == {"id": id} and re.match(r"^dpl_[0-9A-Z]{13}$", id)
    assert reply.headers["Location"] == "/api/dispatch-pools/" + id
    expected = {
        "id": id,
        "code": "crud",
        "name": "CRUD pool",
        "description": None,
        "clientId": None,
        "clientIdentifier": None,
        "status": "ACTIVE",
        "rateLimit": 120,
        "concurrency": 5,
        "routerPoolCode": "crud",
    }
    assert assert_stamps(anchor.get("/api/dispatch-pools/" + id).json()) == expected
    listed = anchor.get("/api/dispatch-pools").json()
    assert listed["total"] == len(listed["pools"])
    assert [assert_stamps(p) for p in listed["pools"] if p["id"] == id] == [expected]

    reply = anchor.put(
        "/api/dispatch-pools/" + id,
        json={"rateLimit": None, "concurrency": 7, "description": "bulk mail"},
    )
    assert reply.status_code == 204 and reply.content == b""
    body = assert_stamps(anchor.get("/api/dispatch-pools/" + id).json())
    assert body == dict(expected, rateLimit=None, concurrency=7, description="bulk mail")

    assert anchor.delete("/api/dispatch-pools/" + id).status_code == 204
    assert anchor.get("/api/dispatch-pools/" + id).status_code == 404
    assert audit_operations(server, id) == [
        ("CreateDispatchPoolCommand", "anchor-user"),
        ("UpdateDispatchPoolCommand", "anchor-user"),
        ("DeleteDispatchPoolCommand", "anchor-user"),
    ]


def test_status_actions_and_filter(anchor):
    id = create(anchor, code="lifecycle")
    reply = anchor.post("/api/dispatch-pools/%s/suspend" % id)
    assert reply.status_code == 200 and reply.json()["status"] == "SUSPENDED"
    suspended = anchor.get("/api/dispatch-pools?status=suspended").json()["pools"]
    assert [p["id"] for p in suspended] == [id]
    assert id not in [
        p["id"] for p in anchor.get("/api/dispatch-pools?status=ACTIVE").json()["pools"]
    ]

    assert anchor.post("/api/dispatch-pools/%s/archive" % id).json()["status"] == "ARCHIVED"
    refused = anchor.put("/api/dispatch-pools/" + id, json={"concurrency": 3})
    assert refused.status_code == 409 and refused.json()["error"] == "DISPATCH_POOL_ARCHIVED"
    assert anchor.post("/api/dispatch-pools/%s/activate" % id).json()["status"] == "ACTIVE"
    assert anchor.put("/api/dispatch-pools/" + id, json={"concurrency": 3}).status_code == 204
    assert anchor.put("/api/dispatch-pools/" + id, json={"status": "ARCHIVED"}).status_code == 204
    assert anchor.get("/api/dispatch-pools/" + id).json()["status"] == "ARCHIVED"

    bad = anchor.get("/api/dispatch-pools?status=GONE")
    assert bad.status_code == 400 and bad.json()["field"] == "status"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x"}, "code"),
        ({"code": "", "name": "x"}, "code"),
        ({"code": "a b", "name": "x"}, "code"),
        ({"code": "x@y", "name": "x"}, "code"),
        ({"code": "v"}, "name"),
        ({"code": "v", "name": 5}, "name"),
        ({"code": "v", "name": "x", "concurrency": 0}, "concurrency"),
        ({"code": "v", "name": "x", "concurrency": 1001}, "concurrency"),
        ({"code": "v", "name": "x", "concurrency": "4"}, "concurrency"),
        ({"code": "v", "name": "x", "rateLimit": 0}, "rateLimit"),
        ({"code": "v", "name": "x", "rateLimit": 1.5}, "rateLimit"),
        ({"code": "v", "name": "x", "status": "DELETED"}, "status"),
        ({"code": "v", "name": "x", "clientId": "c" * 18}, "clientId"),
    ],
)
def test_create_validation_names_the_field(anchor, body, field):
    reply = anchor.post("/api/dispatch-pools", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"] == "VALIDATION_ERROR" and reply.json()["field"] == field
    assert reply.json()["message"].startswith(field + ":")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": None}, "name"),
        ({"concurrency": None}, "concurrency"),
        ({"concurrency": 0}, "concurrency"),
        ({"rateLimit": -1}, "rateLimit"),
        ({"status": None}, "status"),
    ],
)
def test_update_validation_names_the_field(anchor, body, field):
    id = create(anchor, code=unique("upd"))
    reply = anchor.put("/api/dispatch-pools/" + id, json=body)
    assert reply.status_code == 400 and reply.json()["field"] == field


def test_unknown_pool_is_404(anchor):
    for method, path in (
        ("GET", ""),
        ("PUT", ""),
        ("DELETE", ""),
        ("POST", "/suspend"),
    ):
        reply = anchor.request(method, "/api/dispatch-pools/dpl_NOPE" + path, json={"name": "x"})
        assert reply.status_code == 404, (method, path)
        assert reply.json() == {"error": "NOT_FOUND", "message": "dispatch pool dpl_NOPE not found"}


def test_duplicate_code_and_pool_in_use_are_409(server, anchor):
    first = create(anchor, code="dup")
    again = anchor.post("/api/dispatch-pools", json={"code": "dup", "name": "again"})
    assert again.status_code == 409 and again.json()["error"] == "DISPATCH_POOL_CODE_EXISTS"
    other_client = create(anchor, code="dup", clientId="clt_OTHER")  # unique per client only
    assert other_client != first

    add_subscription(server, "uses-dup", pool_id=first)
    refused = anchor.delete("/api/dispatch-pools/" + first)
    assert refused.status_code == 409 and refused.json()["error"] == "DISPATCH_POOL_IN_USE"
    assert anchor.get("/api/dispatch-pools/" + first).status_code == 200


def test_change_reaches_the_embedded_router(server, anchor):
    def router_pool(code):
        pools = anchor.get("/monitoring/pools").json()
        return next((p for p in pools if p["pool_code"] == code), None)

    id = create(anchor, code="live", clientId="clt_LIVE", concurrency=3, rateLimit=600)
    pool = router_pool("live@clt_LIVE")
    assert (pool["concurrency"], pool["rate_limit_per_minute"]) == (3, 600)

    anchor.put("/api/dispatch-pools/" + id, json={"concurrency": 9, "rateLimit": None})
    pool = router_pool("live@clt_LIVE")
    assert (pool["concurrency"], pool["rate_limit_per_minute"]) == (9, None)

    anchor.post("/api/dispatch-pools/%s/suspend" % id)  # the router runs ACTIVE pools only
    eventually(lambda: router_pool("live@clt_LIVE") is None, what="the suspended pool to leave")


def test_tenants(server, anchor):
    anchors_pool = create(anchor, code="tenant-anchor")
    others_pool = create(anchor, code="tenant-b", clientId="clt_B")
    admin = ("platform:messaging-admin",)
    with client_for(server, token("alice", "CLIENT", ["clt_A"], admin)) as alice:
        reply = alice.post("/api/dispatch-pools", json={"code": "tenant-a", "name": "A's"})
        assert reply.status_code == 201
        own = alice.get("/api/dispatch-pools/" + reply.json()["id"]).json()
        assert own["clientId"] == "clt_A" and own["routerPoolCode"] == "tenant-a@clt_A"
        listed = alice.get("/api/dispatch-pools").json()
        assert {p["clientId"] for p in listed["pools"]} == {"clt_A"}
        for id in (anchors_pool, others_pool):
            assert alice.get("/api/dispatch-pools/" + id).status_code == 403
            assert alice.delete("/api/dispatch-pools/" + id).status_code == 403
        foreign = alice.post(
            "/api/dispatch-pools", json={"code": "x", "name": "x", "clientId": "clt_B"}
        )
        assert foreign.status_code == 403 and foreign.json()["error"] == "FORBIDDEN"
        assert alice.get("/api/dispatch-pools?clientId=clt_B").status_code == 403


def test_permissions(server, anchor):
    id = create(anchor, code="perm")
    with client_for(server, token("viewer", "CLIENT", ["*"], ["platform:messaging-viewer"])) as v:
        assert v.get("/api/dispatch-pools").status_code == 200
        for method, path in (
            ("POST", "/api/dispatch-pools"),
            ("PUT", "/api/dispatch-pools/" + id),
            ("DELETE", "/api/dispatch-pools/" + id),
            ("POST", "/api/dispatch-pools/%s/archive" % id),
        ):
            reply = v.request(method, path, json={"code": "p", "name": "p"})
            assert reply.status_code == 403 and reply.json()["error"] == "FORBIDDEN", path
    with client_for(server, token("nobody", "CLIENT", ["clt_A"])) as nobody:
        assert nobody.get("/api/dispatch-pools").status_code == 403
    assert httpx.get(server.url("/api/dispatch-pools")).status_code == 401
