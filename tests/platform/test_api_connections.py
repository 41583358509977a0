"""Connections over HTTP (spec/platform.md §1.5, §3.7), on SQLite and PostgreSQL: CRUD,
validation naming each field, pause/resume (resuming wakes the scheduler), 404/409, tenants
and permissions."""

import re

import pytest

from tests.platform.test_api_pools import (
    add_subscription,
    assert_stamps,
    audit_operations,
    client_for,
    start_server,
    token,
    unique,
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    return start_server(request, tmp_path_factory)


@pytest.fixture(scope="module")
def anchor(server):
    with client_for(server, token()) as c:
        yield c


@pytest.fixture
def wakes(server):
    """The names the server's signals are woken with while the test runs."""
    signals = server.app.platform.signals
    woken = []
    original = signals.wake

    def recording(name):
        woken.append(name)
        original(name)

    signals.wake = recording
    yield woken
    signals.wake = original


def create(anchor, **body):
    reply = anchor.post(
        "/api/connections", json=dict({"code": unique("con"), "name": "A connection"}, **body)
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def test_create_read_update_delete(server, anchor):
    reply = anchor.post(
        "/api/connections",
        json={"code": "crm-sync", "name": "CRM", "externalId": "ext-1", "description": "d"},
    )
    assert reply.status_code == 201
    id = reply.json()["id"]
    assert reply.json() == {"id": id} and re.match(r"^con_[0-9A-Z]{13}$", id)
    expected = {
        "id": id,
        "code": "crm-sync",
        "name": "CRM",
        "description": "d",
        "externalId": "ext-1",
        "status": "ACTIVE",
        "serviceAccountId": "anchor-user",  # the caller, by default
        "clientId": None,
        "clientIdentifier": None,
    }
    assert assert_stamps(anchor.get("/api/connections/" + id).json()) == expected
    listed = anchor.get("/api/connections").json()
    assert listed["total"] == len(listed["connections"])
    assert [assert_stamps(c) for c in listed["connections"] if c["id"] == id] == [expected]

    changes = {"name": "CRM 2", "externalId": None, "serviceAccountId": "sac_0HZXEQ5Y8JY5Z"}
    assert anchor.put("/api/connections/" + id, json=changes).status_code == 204
    assert assert_stamps(anchor.get("/api/connections/" + id).json()) == dict(expected, **changes)

    assert anchor.delete("/api/connections/" + id).status_code == 204
    assert anchor.get("/api/connections/" + id).status_code == 404
    assert audit_operations(server, id) == [
        ("CreateConnectionCommand", "anchor-user"),
        ("UpdateConnectionCommand", "anchor-user"),
        ("DeleteConnectionCommand", "anchor-user"),
    ]


def test_pause_and_resume(anchor, wakes):
    id = create(anchor)
    paused = anchor.post("/api/connections/%s/pause" % id)
    assert paused.status_code == 200 and paused.json()["status"] == "PAUSED"
    assert anchor.get("/api/connections/" + id).json()["status"] == "PAUSED"
    assert "scheduler" not in wakes

    resumed = anchor.post("/api/connections/%s/resume" % id)
    assert resumed.status_code == 200 and resumed.json()["status"] == "ACTIVE"
    assert wakes.count("scheduler") == 1

    assert anchor.put("/api/connections/" + id, json={"status": "paused"}).status_code == 204
    assert anchor.get("/api/connections/" + id).json()["status"] == "PAUSED"
    assert anchor.put("/api/connections/" + id, json={"status": "ACTIVE"}).status_code == 204
    assert wakes.count("scheduler") == 2
    anchor.post("/api/connections/%s/pause" % id)
    assert anchor.post("/api/connections/%s/activate" % id).json()["status"] == "ACTIVE"
    assert wakes.count("scheduler") == 3


def test_list_filters(anchor):
    account = "sac_" + unique("F").replace("-", "")
    paused = create(anchor, serviceAccountId=account, status="PAUSED", clientId="clt_F")
    active = create(anchor, serviceAccountId=account, clientId="clt_F")

    def ids(query):
        reply = anchor.get("/api/connections?" + query)
        assert reply.status_code == 200, reply.text
        return [c["id"] for c in reply.json()["connections"]]

    assert sorted(ids("serviceAccountId=" + account)) == sorted([paused, active])
    assert ids("serviceAccountId=%s&status=PAUSED" % account) == [paused]
    assert ids("clientId=clt_F&status=ACTIVE") == [active]
    assert ids("clientId=clt_NONE") == []
    bad = anchor.get("/api/connections?status=SUSPENDED")
    assert bad.status_code == 400 and bad.json()["field"] == "status"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x"}, "code"),
        ({"code": "Upper", "name": "x"}, "code"),
        ({"code": "1abc", "name": "x"}, "code"),
        ({"code": "a_b", "name": "x"}, "code"),
        ({"code": "c" * 101, "name": "x"}, "code"),
        ({"code": "ok"}, "name"),
        ({"code": "ok", "name": "x", "serviceAccountId": "s" * 18}, "serviceAccountId"),
        ({"code": "ok", "name": "x", "serviceAccountId": 7}, "serviceAccountId"),
        ({"code": "ok", "name": "x", "externalId": "e" * 101}, "externalId"),
        ({"code": "ok", "name": "x", "status": "STOPPED"}, "status"),
        ({"code": "ok", "name": "x", "clientId": "c" * 18}, "clientId"),
    ],
)
def test_create_validation_names_the_field(anchor, body, field):
    reply = anchor.post("/api/connections", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"] == "VALIDATION_ERROR" and reply.json()["field"] == field


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": ""}, "name"),
        ({"serviceAccountId": None}, "serviceAccountId"),
        ({"status": "ARCHIVED"}, "status"),
        ({"description": 3}, "description"),
    ],
)
def test_update_validation_names_the_field(anchor, body, field):
    reply = anchor.put("/api/connections/" + create(anchor), json=body)
    assert reply.status_code == 400 and reply.json()["field"] == field


def test_service_account_cannot_default_to_a_long_principal_id(server):
    long_id = "user-with-a-long-principal-id"
    with client_for(server, token(long_id)) as c:
        reply = c.post("/api/connections", json={"code": "long", "name": "x"})
        assert reply.status_code == 400 and reply.json()["field"] == "serviceAccountId"
        assert long_id in reply.json()["message"]


def test_unknown_connection_is_404(anchor):
    for method, path in (("GET", ""), ("PUT", ""), ("DELETE", ""), ("POST", "/pause")):
        reply = anchor.request(method, "/api/connections/con_NOPE" + path, json={"name": "x"})
        assert reply.status_code == 404, (method, path)
        assert reply.json() == {"error": "NOT_FOUND", "message": "connection con_NOPE not found"}


def test_duplicate_code_and_connection_in_use_are_409(server, anchor):
    first = create(anchor, code="dup")
    again = anchor.post("/api/connections", json={"code": "dup", "name": "again"})
    assert again.status_code == 409 and again.json()["error"] == "CONNECTION_CODE_EXISTS"
    assert create(anchor, code="dup", clientId="clt_OTHER") != first

    add_subscription(server, "uses-con", connection_id=first)
    refused = anchor.delete("/api/connections/" + first)
    assert refused.status_code == 409 and refused.json()["error"] == "CONNECTION_IN_USE"
    assert anchor.get("/api/connections/" + first).status_code == 200


def test_tenants_and_permissions(server, anchor):
    others = create(anchor, clientId="clt_B")
    admin = ("platform:messaging-admin",)
    with client_for(server, token("alice", "CLIENT", ["clt_A"], admin)) as alice:
        reply = alice.post("/api/connections", json={"code": "alices", "name": "A's"})
        own = alice.get("/api/connections/" + reply.json()["id"]).json()
        assert (own["clientId"], own["serviceAccountId"]) == ("clt_A", "alice")
        listed = alice.get("/api/connections").json()["connections"]
        assert {c["clientId"] for c in listed} == {"clt_A"}
        assert alice.get("/api/connections/" + others).status_code == 403
        assert alice.post("/api/connections/%s/pause" % others).status_code == 403
    with client_for(server, token("viewer", "CLIENT", ["*"], ["platform:messaging-viewer"])) as v:
        assert v.get("/api/connections/" + others).status_code == 200
        for method, path in (
            ("POST", "/api/connections"),
            ("PUT", "/api/connections/" + others),
            ("DELETE", "/api/connections/" + others),
            ("POST", "/api/connections/%s/resume" % others),
        ):
            reply = v.request(method, path, json={"code": "p", "name": "p"})
            assert reply.status_code == 403 and reply.json()["error"] == "FORBIDDEN", path
    with client_for(server, token("nobody", "CLIENT", ["clt_B"])) as nobody:
        assert nobody.get("/api/connections").status_code == 403
