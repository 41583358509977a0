"""The event-type API (server/platform/api_eventtypes.py) against a real server, on SQLite and
on PostgreSQL: the 4-segment code rule, CRUD, duplicates, who may write, and the audit trail.

`serve`, `bearer` and `ADMIN` are shared with test_api_subscriptions.py: one server per
module and database, JWT auth with a service token for the anchor."""

import time
import uuid

import httpx
import jwt
import pytest

from tests.support.platform import PlatformRunner
from tests.support.postgres import FreshDatabase

JWT_SECRET = "jwt-secret-for-the-api-tests-0123456789"
SERVICE_TOKEN = "admin-service-token-0123456789"
ADMIN = {"Authorization": "Bearer " + SERVICE_TOKEN}  # a service token: anchor scope


def bearer(sub, scope="CLIENT", clients=(), roles=("platform:messaging-admin",)):
    """Headers with a JWT for a principal of `scope` acting on `clients`."""
    claims = {
        "sub": sub,
        "scope": scope,
        "clients": list(clients),
        "roles": list(roles),
        "exp": int(time.time()) + 3600,
    }
    return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, algorithm="HS256")}


def serve(request, tmp_path_factory):
    """A platform with only its API (no background loops) on request.param's database."""
    tmp = tmp_path_factory.mktemp(request.param)
    db = FreshDatabase() if request.param == "postgres" else None
    url = db.url if db else "sqlite://%s" % (tmp / "platform.db")
    try:
        with PlatformRunner(
            tmp,
            url,
            auth="JWT",
            jwt_secret=JWT_SECRET,
            service_tokens={SERVICE_TOKEN: "admin"},
            router_enabled=False,
            scheduler_enabled=False,
            stream_enabled=False,
        ) as platform:
            with platform.client(headers=ADMIN) as http:
                platform.http = http
                yield platform
    finally:
        if db:
            db.drop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platform(request, tmp_path_factory):
    yield from serve(request, tmp_path_factory)


def unique_code(event="created"):
    return "app%s:orders:order:%s" % (uuid.uuid4().hex[:8], event)


def create(platform, **fields):
    body = {"code": unique_code(), "name": "Order created"}
    body.update(fields)
    reply = platform.http.post("/api/event-types", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


def test_create_get_list_update_delete(platform):
    code = unique_code()
    reply = platform.http.post(
        "/api/event-types", json={"code": code, "name": "Order created", "description": "new order"}
    )
    assert reply.status_code == 201, reply.text
    created = reply.json()
    app = code.split(":")[0]
    assert created["id"].startswith("evt_") and len(created["id"]) == 17
    assert created == {
        "id": created["id"],
        "code": code,
        "name": "Order created",
        "description": "new order",
        "status": "CURRENT",
        "source": "API",
        "clientScoped": False,
        "application": app,
        "subdomain": "orders",
        "aggregate": "order",
        "eventName": "created",
        "createdAt": created["createdAt"],
        "updatedAt": created["createdAt"],
    }
    path = "/api/event-types/" + created["id"]
    assert platform.http.get(path).json() == created

    listed = platform.http.get("/api/event-types", params={"application": app}).json()
    assert listed == {"eventTypes": [created], "total": 1}

    reply = platform.http.put(path, json={"name": "Order placed", "status": "ARCHIVED"})
    assert reply.status_code == 204, reply.text
    changed = platform.http.get(path).json()
    assert (changed["name"], changed["status"], changed["description"]) == (
        "Order placed",
        "ARCHIVED",
        "new order",
    )
    assert changed["updatedAt"] > created["updatedAt"]
    both = {"application": app, "status": "CURRENT"}
    assert platform.http.get("/api/event-types", params=both).json()["total"] == 0

    assert platform.http.delete(path).status_code == 204
    assert platform.http.get(path).status_code == 404
    rows = platform.query(
        "SELECT operation, principal_id FROM aud_logs WHERE entity_id = ? ORDER BY performed_at",
        (created["id"],),
    )
    assert rows == [
        {"operation": op + "EventTypeCommand", "principal_id": "service:admin"}
        for op in ("Create", "Update", "Delete")
    ]


@pytest.mark.parametrize(
    "code, words",
    [
        ("orders:order:created", "3 segments"),
        ("a:b:c:d:e", "5 segments"),
        ("orders::order:created", "empty subdomain"),
        ("orders:fulfil:shipment:", "empty event"),
        (":fulfil:shipment:shipped", "empty application"),
        ("demo.order.created", "1 segment"),
    ],
)
def test_code_needs_four_non_empty_segments(platform, code, words):
    reply = platform.http.post("/api/event-types", json={"code": code, "name": "x"})
    assert reply.status_code == 400
    body = reply.json()
    assert body["error"] == "INVALID_CODE_FORMAT" and body["field"] == "code"
    assert words in body["message"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x"}, "code"),
        ({"code": "a:b:c:d"}, "name"),
        ({"code": "a:b:c:d", "name": ""}, "name"),
        ({"code": "a:b:c:d", "name": "x", "clientScoped": "yes"}, "clientScoped"),
        ({"code": "a:b:c:d", "name": "x", "status": "DELETED"}, "status"),
        ({"code": "a:b:c:d", "name": "x", "source": "FAX"}, "source"),
    ],
)
def test_validation_names_the_field(platform, body, field):
    reply = platform.http.post("/api/event-types", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"] == "VALIDATION_ERROR" and reply.json()["field"] == field


def test_duplicate_code_is_409(platform):
    first = create(platform)
    reply = platform.http.post("/api/event-types", json={"code": first["code"], "name": "again"})
    assert reply.status_code == 409
    assert reply.json()["error"] == "CODE_EXISTS" and first["code"] in reply.json()["message"]


def test_code_cannot_change(platform):
    created = create(platform)
    reply = platform.http.put(
        "/api/event-types/" + created["id"], json={"code": "a:b:c:other", "name": "y"}
    )
    assert reply.status_code == 400 and reply.json()["field"] == "code"
    assert platform.http.get("/api/event-types/" + created["id"]).json()["name"] == created["name"]


def test_unknown_id_is_404(platform):
    for method in ("GET", "PUT", "DELETE"):
        reply = platform.http.request(method, "/api/event-types/evt_NOPE", json={"name": "x"})
        assert reply.status_code == 404 and reply.json()["error"] == "NOT_FOUND", method


def test_code_filter_takes_patterns(platform):
    created = create(platform, code=unique_code("shipped"))
    app = created["code"].split(":")[0]
    found = platform.http.get("/api/event-types", params={"code": app + ":*:order:*"}).json()
    assert [t["id"] for t in found["eventTypes"]] == [created["id"]]


def test_bound_event_type_cannot_be_deleted(platform):
    created = create(platform)
    reply = platform.http.post(
        "/api/subscriptions",
        json={
            "code": "bound-" + uuid.uuid4().hex[:6],
            "name": "bound",
            "endpoint": "http://127.0.0.1:9/hook",
            "eventTypes": [{"eventTypeCode": created["code"]}],
        },
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["eventTypes"][0]["eventTypeId"] == created["id"]
    refused = platform.http.delete("/api/event-types/" + created["id"])
    assert refused.status_code == 409 and refused.json()["error"] == "EVENT_TYPE_IN_USE"
    assert platform.http.delete("/api/subscriptions/" + reply.json()["id"]).status_code == 204
    assert platform.http.delete("/api/event-types/" + created["id"]).status_code == 204


def test_clients_read_but_only_anchors_write(platform):
    created = create(platform)
    client = bearer("user-1", clients=["clt_0000000000001"])
    assert platform.http.get("/api/event-types/" + created["id"], headers=client).status_code == 200
    reply = platform.http.post(
        "/api/event-types", json={"code": unique_code(), "name": "x"}, headers=client
    )
    assert reply.status_code == 403 and reply.json()["error"] == "FORBIDDEN"
    path = "/api/event-types/" + created["id"]
    assert platform.http.put(path, json={"name": "y"}, headers=client).status_code == 403
    assert platform.http.delete(path, headers=client).status_code == 403
    viewer = bearer("viewer", scope="ANCHOR", roles=())
    no_permission = bearer("nobody", clients=["clt_0000000000001"], roles=())
    assert (
        platform.http.get(path, headers=viewer).status_code == 200
    )  # anchors hold every permission
    assert platform.http.get(path, headers=no_permission).status_code == 403
    assert httpx.get(platform.url(path)).status_code == 401
