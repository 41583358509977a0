"""The subscription API (server/platform/api_subscriptions.py) against a real server, on SQLite
and on PostgreSQL: the body rules, defaults, signing secrets, links to connections and pools,
partial updates, tenant scoping, the fan-out version and the audit trail."""

import base64
import json
import re
import uuid

import pytest

from flowcatalyst.server.platform import clock
from tests.platform.test_api_eventtypes import bearer, serve


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platform(request, tmp_path_factory):
    yield from serve(request, tmp_path_factory)


def new_client():
    return "clt_" + uuid.uuid4().hex[:13].upper()


def new_code():
    return "sub-" + uuid.uuid4().hex[:8]


def body(**fields):
    out = {
        "code": new_code(),
        "name": "Orders webhook",
        "endpoint": "https://hooks.example.com/orders",
        "eventTypes": [{"eventTypeCode": "orders:*:order:created"}],
    }
    out.update(fields)
    return out


def create(platform, headers=None, **fields):
    reply = platform.http.post("/api/subscriptions", json=body(**fields), headers=headers)
    assert reply.status_code == 201, reply.text
    return reply.json()


def version(platform):
    return platform.query("SELECT value FROM fc_versions WHERE name = 'subscriptions'")[0]["value"]


def add_row(platform, table, **row):
    """A connection or pool row as their own APIs would write it."""
    now = clock.now()
    row.update(created_at=now, updated_at=now)

    async def insert(tx):
        await tx.insert(table, list(row), [tuple(row.values())])

    platform.write(insert)


def test_create_shows_everything_once_with_the_secret(platform):
    client = new_client()
    before = version(platform)
    created = create(
        platform,
        clientId=client,
        description="all fields",
        eventTypes=[
            {"eventTypeCode": "orders:*:order:created", "specVersion": "1.0", "filter": "x"},
            "orders:fulfil:shipment:shipped",
        ],
        customConfig=[{"key": "region", "value": "eu"}],
        mode="BLOCKONERROR",
        delaySeconds=5,
        sequence=7,
        timeoutSeconds=900,
        maxRetries=0,
        maxAgeSeconds=60,
        dataOnly=False,
        clientScoped=True,
        applicationCode="orders",
        serviceAccountId="sac_0000000000001",
        source="CODE",
        signingSecret="test-secret",
    )
    sid = created["id"]
    assert sid.startswith("sub_") and len(sid) == 17
    assert created == {
        "id": sid,
        "code": created["code"],
        "name": "Orders webhook",
        "description": "all fields",
        "clientId": client,
        "clientIdentifier": None,
        "clientScoped": True,
        "applicationCode": "orders",
        "eventTypes": [
            {
                "eventTypeCode": "orders:*:order:created",
                "eventTypeId": None,
                "specVersion": "1.0",
                "filter": "x",
            },
            {
                "eventTypeCode": "orders:fulfil:shipment:shipped",
                "eventTypeId": None,
                "specVersion": None,
                "filter": None,
            },
        ],
        "endpoint": "https://hooks.example.com/orders",
        "connectionId": None,
        "queue": None,
        "customConfig": [{"key": "region", "value": "eu"}],
        "source": "CODE",
        "status": "ACTIVE",
        "maxAgeSeconds": 60,
        "dispatchPoolId": None,
        "dispatchPoolCode": None,
        "delaySeconds": 5,
        "sequence": 7,
        "mode": "BLOCK_ON_ERROR",
        "timeoutSeconds": 900,
        "maxRetries": 0,
        "serviceAccountId": "sac_0000000000001",
        "dataOnly": False,
        "standardWebhooks": False,
        "hasSigningSecret": True,
        "signingSecret": "test-secret",
        "createdBy": "service:admin",
        "createdAt": created["createdAt"],
        "updatedAt": created["createdAt"],
    }
    assert version(platform) == before + 1
    shown = dict(created)
    del shown["signingSecret"]
    assert platform.http.get("/api/subscriptions/" + sid).json() == shown
    listed = platform.http.get("/api/subscriptions", params={"clientId": client}).json()
    assert listed == {"subscriptions": [shown], "total": 1}
    stored = platform.query(
        "SELECT target, signing_secret, mode FROM msg_subscriptions WHERE id = ?", (sid,)
    )
    assert stored == [
        {
            "target": "https://hooks.example.com/orders",
            "signing_secret": "test-secret",
            "mode": "BLOCK_ON_ERROR",
        }
    ]
    logs = platform.query(
        "SELECT operation, operation_json, principal_id, client_id FROM aud_logs"
        " WHERE entity_type = 'Subscription' AND entity_id = ?",
        (sid,),
    )
    assert len(logs) == 1 and logs[0]["operation"] == "CreateSubscriptionCommand"
    assert (logs[0]["principal_id"], logs[0]["client_id"]) == ("service:admin", client)
    details = json.loads(logs[0]["operation_json"])
    assert details["signingSecret"] == "***" and details["code"] == created["code"]


def test_defaults_and_a_generated_secret(platform):
    minimal = body(target="http://127.0.0.1:8080/hook")  # `target` is accepted for `endpoint`
    del minimal["endpoint"]
    reply = platform.http.post("/api/subscriptions", json=minimal)
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert (
        created["mode"],
        created["timeoutSeconds"],
        created["maxRetries"],
        created["dataOnly"],
        created["status"],
        created["delaySeconds"],
        created["sequence"],
        created["maxAgeSeconds"],
        created["source"],
        created["clientId"],
        created["endpoint"],
        created["customConfig"],
    ) == (
        "IMMEDIATE",
        30,
        3,
        True,
        "ACTIVE",
        0,
        99,
        86400,
        "API",
        None,
        "http://127.0.0.1:8080/hook",
        [],
    )
    assert re.fullmatch("[0-9a-f]{64}", created["signingSecret"])


def test_code_is_trimmed_and_lower_cased(platform):
    code = new_code()
    created = create(platform, code="  %s  " % code.upper())
    assert created["code"] == code


def test_standard_webhooks_secret(platform):
    created = create(platform, standardWebhooks=True)
    secret = created["signingSecret"]
    assert created["standardWebhooks"] is True and secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:], validate=True)) == 32
    given = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert create(platform, standardWebhooks=True, signingSecret=given)["signingSecret"] == given
    for secret in ("plain-secret", "whsec_not*base64", "whsec_"):
        reply = platform.http.post(
            "/api/subscriptions", json=body(standardWebhooks=True, signingSecret=secret)
        )
        assert reply.status_code == 400 and reply.json()["field"] == "signingSecret", secret


@pytest.mark.parametrize(
    "given, stored",
    [
        ("next_on_error", "NEXT_ON_ERROR"),
        ("NEXTONERROR", "NEXT_ON_ERROR"),
        ("immediate", "IMMEDIATE"),
        ("BLOCK_ON_ERROR", "BLOCK_ON_ERROR"),
    ],
)
def test_modes_in_either_spelling(platform, given, stored):
    assert create(platform, mode=given)["mode"] == stored


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"code": None}, "code"),
        ({"code": "a"}, "code"),
        ({"code": "-ab"}, "code"),
        ({"code": "ab-"}, "code"),
        ({"code": "a_b"}, "code"),
        ({"name": None}, "name"),
        ({"name": "  "}, "name"),
        ({"endpoint": None}, "endpoint"),
        ({"endpoint": "ftp://example.com/x"}, "endpoint"),
        ({"endpoint": "not a url"}, "endpoint"),
        ({"endpoint": "http://"}, "endpoint"),
        ({"endpoint": "http://example.com:99999/"}, "endpoint"),
        ({"endpoint": "https://example.com/" + "x" * 500}, "endpoint"),
        ({"eventTypes": None}, "eventTypes"),
        ({"eventTypes": []}, "eventTypes"),
        ({"eventTypes": "a:b:c:d"}, "eventTypes"),
        ({"eventTypes": [{}]}, "eventTypes[0].eventTypeCode"),
        ({"eventTypes": ["a:b:c:d", "a::c:d"]}, "eventTypes[1].eventTypeCode"),
        ({"eventTypes": [7]}, "eventTypes[0]"),
        ({"mode": "SOMETIMES"}, "mode"),
        ({"status": "DELETED"}, "status"),
        ({"timeoutSeconds": 0}, "timeoutSeconds"),
        ({"timeoutSeconds": 901}, "timeoutSeconds"),
        ({"maxRetries": -1}, "maxRetries"),
        ({"maxRetries": 101}, "maxRetries"),
        ({"maxRetries": "3"}, "maxRetries"),
        ({"delaySeconds": -1}, "delaySeconds"),
        ({"maxAgeSeconds": 0}, "maxAgeSeconds"),
        ({"dataOnly": "yes"}, "dataOnly"),
        ({"standardWebhooks": 1}, "standardWebhooks"),
        ({"customConfig": "x"}, "customConfig"),
        ({"customConfig": [{"value": "v"}]}, "customConfig[0]"),
        ({"customConfig": [{"key": "k" * 101, "value": "v"}]}, "customConfig[0].key"),
        ({"connectionId": "con_NOSUCHCONNECT"}, "connectionId"),
        ({"dispatchPoolId": "dpl_NOSUCHPOOL00"}, "dispatchPoolId"),
        ({"dispatchPoolCode": "no-such-pool"}, "dispatchPoolCode"),
    ],
)
def test_validation_names_the_field(platform, fields, field):
    before = version(platform)
    reply = platform.http.post("/api/subscriptions", json=body(**fields))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == "VALIDATION_ERROR" and reply.json()["field"] == field
    assert version(platform) == before


def test_not_json_is_400(platform):
    reply = platform.http.post("/api/subscriptions", content=b"{nope")
    assert reply.status_code == 400 and reply.json()["error"] == "VALIDATION_ERROR"


def test_duplicate_code_per_client_is_409(platform):
    client = new_client()
    first = create(platform, clientId=client)
    before = version(platform)
    reply = platform.http.post("/api/subscriptions", json=body(code=first["code"], clientId=client))
    assert reply.status_code == 409 and reply.json()["error"] == "SUBSCRIPTION_CODE_EXISTS"
    assert version(platform) == before
    assert create(platform, code=first["code"], clientId=new_client())["code"] == first["code"]
    create(platform, code=first["code"])  # anchor level is a scope of its own
    reply = platform.http.post("/api/subscriptions", json=body(code=first["code"]))
    assert reply.status_code == 409 and "anchor level" in reply.json()["message"]


def test_connections_and_pools_must_exist_and_be_the_clients(platform):
    client, other = new_client(), new_client()
    for owner in (client, other, None):
        suffix = (owner or "anchor")[-6:].lower()
        add_row(platform, "msg_connections", id="con_" + suffix.upper().rjust(13, "0"),
                code="c-" + suffix, name="c", service_account_id="sac_1", client_id=owner)  # fmt: skip
        add_row(platform, "msg_dispatch_pools", id="dpl_" + suffix.upper().rjust(13, "0"),
                code="fast", name="p", client_id=owner)  # fmt: skip

    def ident(prefix, owner):
        return prefix + "_" + (owner or "anchor")[-6:].upper().rjust(13, "0")

    linked = create(
        platform,
        clientId=client,
        connectionId=ident("con", client),
        dispatchPoolCode="fast",  # the client's own pool before the anchor-level one
    )
    assert linked["connectionId"] == ident("con", client)
    assert (linked["dispatchPoolId"], linked["dispatchPoolCode"]) == (ident("dpl", client), "fast")
    anchor_pool = create(platform, clientId=client, dispatchPoolId=ident("dpl", None))
    assert anchor_pool["dispatchPoolCode"] == "fast"
    for fields, field in (
        ({"connectionId": ident("con", other)}, "connectionId"),
        ({"dispatchPoolId": ident("dpl", other)}, "dispatchPoolId"),
    ):
        reply = platform.http.post("/api/subscriptions", json=body(clientId=client, **fields))
        assert reply.status_code == 400 and reply.json()["field"] == field
        assert "another client" in reply.json()["message"]


def test_partial_update(platform):
    created = create(platform, customConfig={"a": "1"}, mode="IMMEDIATE")
    path = "/api/subscriptions/" + created["id"]
    before = version(platform)
    reply = platform.http.put(path, json={"name": "Renamed", "mode": "NEXT_ON_ERROR"})
    assert reply.status_code == 204, reply.text
    after = platform.http.get(path).json()
    assert (after["name"], after["mode"]) == ("Renamed", "NEXT_ON_ERROR")
    assert after["updatedAt"] > created["updatedAt"]
    untouched = ("endpoint", "eventTypes", "customConfig", "timeoutSeconds", "code", "createdAt")
    assert {k: after[k] for k in untouched} == {k: created[k] for k in untouched}

    reply = platform.http.put(
        path,
        json={
            "eventTypes": ["billing:*:invoice:paid"],
            "customConfig": [],
            "endpoint": "https://other.example.com/h",
            "description": None,
        },
    )
    assert reply.status_code == 204, reply.text
    after = platform.http.get(path).json()
    assert [b["eventTypeCode"] for b in after["eventTypes"]] == ["billing:*:invoice:paid"]
    assert (after["customConfig"], after["endpoint"], after["description"]) == (
        [],
        "https://other.example.com/h",
        None,
    )
    assert version(platform) == before + 2
    bindings = platform.query(
        "SELECT event_type_code FROM msg_subscription_event_types WHERE subscription_id = ?",
        (created["id"],),
    )
    assert bindings == [{"event_type_code": "billing:*:invoice:paid"}]
    operations = platform.query(
        "SELECT operation FROM aud_logs WHERE entity_id = ? ORDER BY performed_at", (created["id"],)
    )
    assert [row["operation"] for row in operations] == [
        "CreateSubscriptionCommand",
        "UpdateSubscriptionCommand",
        "UpdateSubscriptionCommand",
    ]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"code": "other-code"}, "code"),
        ({"clientId": "clt_0000000000009"}, "clientId"),
        ({"eventTypes": []}, "eventTypes"),
        ({"timeoutSeconds": 1000}, "timeoutSeconds"),
        ({"name": None}, "name"),
        ({"endpoint": "mailto:x@example.com"}, "endpoint"),
        ({"standardWebhooks": True}, "signingSecret"),
        ({"connectionId": "con_NOSUCHCONNECT"}, "connectionId"),
    ],
)
def test_update_validation_changes_nothing(platform, fields, field):
    created = create(platform)
    before = version(platform)
    reply = platform.http.put("/api/subscriptions/" + created["id"], json=fields)
    assert reply.status_code == 400 and reply.json()["field"] == field, reply.text
    assert version(platform) == before
    shown = dict(created)
    del shown["signingSecret"]
    assert platform.http.get("/api/subscriptions/" + created["id"]).json() == shown


def test_secret_rotation_and_standard_webhooks_on_update(platform):
    created = create(platform)
    path = "/api/subscriptions/" + created["id"]
    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    reply = platform.http.put(path, json={"standardWebhooks": True, "signingSecret": secret})
    assert reply.status_code == 204, reply.text
    after = platform.http.get(path).json()
    assert after["standardWebhooks"] is True and "signingSecret" not in after
    stored = platform.query(
        "SELECT signing_secret FROM msg_subscriptions WHERE id = ?", (created["id"],)
    )
    assert stored == [{"signing_secret": secret}]


def test_pause_resume_delete(platform):
    created = create(platform, customConfig={"k": "v"})
    path = "/api/subscriptions/" + created["id"]
    start = version(platform)
    assert platform.http.post(path + "/pause").status_code == 204
    assert platform.http.get(path).json()["status"] == "PAUSED"
    paused = platform.http.get("/api/subscriptions", params={"status": "PAUSED"}).json()
    assert created["id"] in [s["id"] for s in paused["subscriptions"]]
    assert platform.http.post(path + "/resume").status_code == 204
    assert platform.http.get(path).json()["status"] == "ACTIVE"
    assert platform.http.delete(path).status_code == 204
    assert version(platform) == start + 3
    assert platform.http.get(path).status_code == 404
    for table in ("msg_subscription_event_types", "msg_subscription_custom_configs"):
        rows = platform.query(
            "SELECT COUNT(*) AS n FROM %s WHERE subscription_id = ?" % table, (created["id"],)
        )
        assert rows[0]["n"] == 0, table
    operations = platform.query(
        "SELECT operation FROM aud_logs WHERE entity_id = ? ORDER BY performed_at", (created["id"],)
    )
    assert [row["operation"] for row in operations] == [
        "CreateSubscriptionCommand",
        "PauseSubscriptionCommand",
        "ResumeSubscriptionCommand",
        "DeleteSubscriptionCommand",
    ]


def test_unknown_id_is_404(platform):
    before = version(platform)
    for method, suffix in (
        ("GET", ""),
        ("PUT", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/resume"),
    ):
        reply = platform.http.request(
            method, "/api/subscriptions/sub_NOSUCHTHING0" + suffix, json={"name": "x"}
        )
        assert reply.status_code == 404 and reply.json()["error"] == "NOT_FOUND", (method, suffix)
    assert version(platform) == before


def test_list_filters(platform):
    client = new_client()
    a = create(platform, clientId=client, eventTypes=["shop:sales:cart:checked-out"])
    b = create(platform, clientId=client, status="PAUSED")

    def ids(**params):
        reply = platform.http.get("/api/subscriptions", params=dict(clientId=client, **params))
        assert reply.status_code == 200, reply.text
        found = reply.json()
        assert found["total"] == len(found["subscriptions"])
        return [s["id"] for s in found["subscriptions"]]

    assert ids() == [a["id"], b["id"]]
    assert ids(status="PAUSED") == [b["id"]]
    assert ids(status="active") == [a["id"]]
    assert ids(eventTypeCode="shop:sales:cart:checked-out") == [a["id"]]
    assert ids(code=b["code"]) == [b["id"]]
    reply = platform.http.get("/api/subscriptions", params={"status": "GONE"})
    assert reply.status_code == 400 and reply.json()["field"] == "status"


def test_tenant_scoping(platform):
    mine, theirs = new_client(), new_client()
    me = bearer("user-a", clients=[mine])
    own = create(platform, headers=me)  # no clientId: the caller's client
    assert own["clientId"] == mine and own["createdBy"] == "user-a"
    other = create(platform, clientId=theirs)
    anchor_level = create(platform)

    listed = platform.http.get("/api/subscriptions", headers=me).json()
    assert [s["id"] for s in listed["subscriptions"]] == [own["id"]]
    reply = platform.http.get("/api/subscriptions", params={"clientId": theirs}, headers=me)
    assert reply.status_code == 403
    for target in (other, anchor_level):
        path = "/api/subscriptions/" + target["id"]
        assert platform.http.get(path, headers=me).status_code == 403
        assert platform.http.put(path, json={"name": "x"}, headers=me).status_code == 403
        assert platform.http.post(path + "/pause", headers=me).status_code == 403
        assert platform.http.delete(path, headers=me).status_code == 403
    assert platform.http.get("/api/subscriptions/" + other["id"]).json()["status"] == "ACTIVE"

    reply = platform.http.post("/api/subscriptions", json=body(clientId=theirs), headers=me)
    assert reply.status_code == 403 and reply.json()["error"] == "FORBIDDEN"
    nobody = bearer("user-b", clients=[])  # no client: could only act at anchor level
    reply = platform.http.post("/api/subscriptions", json=body(), headers=nobody)
    assert reply.status_code == 403
    assert platform.http.get("/api/subscriptions", headers=nobody).json() == {
        "subscriptions": [],
        "total": 0,
    }

    path = "/api/subscriptions/" + own["id"]
    assert platform.http.put(path, json={"name": "mine"}, headers=me).status_code == 204
    assert platform.http.delete(path, headers=me).status_code == 204


def test_permissions(platform):
    client = new_client()
    viewer = bearer("viewer", clients=[client], roles=("platform:messaging-viewer",))
    created = create(platform, clientId=client)
    path = "/api/subscriptions/" + created["id"]
    assert platform.http.get(path, headers=viewer).status_code == 200
    refused = (
        platform.http.post("/api/subscriptions", json=body(clientId=client), headers=viewer),
        platform.http.put(path, json={"name": "x"}, headers=viewer),
        platform.http.post(path + "/pause", headers=viewer),
        platform.http.delete(path, headers=viewer),
    )
    assert [r.status_code for r in refused] == [403] * 4
    assert "platform:messaging:subscription:delete" in refused[3].json()["message"]
