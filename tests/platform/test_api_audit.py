"""Audit logs over HTTP (spec/platform.md §1.9, §3.4), on SQLite and PostgreSQL: the batch
endpoint's per-item results, reading back, filters, cursor pages, tenants and permissions."""

import re

import pytest

from tests.platform.test_api_pools import client_for, start_server, token, unique

AUD_ID = re.compile(r"^aud_[0-9A-Z]{13}$")
WRITER = ("platform:publisher",)
VIEWER = ("platform:messaging-viewer",)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    return start_server(request, tmp_path_factory)


@pytest.fixture(scope="module")
def anchor(server):
    with client_for(server, token()) as c:
        yield c


def batch(c, items):
    reply = c.post("/api/audit-logs/batch", json={"items": items})
    assert reply.status_code == 200, reply.text
    return reply.json()["results"]


def record_many(anchor, entity_type, count, **extra):
    """`count` logs of `entity_type`, performed a second apart; their ids, oldest first."""
    items = [
        dict(
            {
                "entityType": entity_type,
                "entityId": "e%d" % (i % 2),
                "operation": "Op%d" % (i % 3),
                "performedAt": "2026-03-01T10:00:%02dZ" % i,
            },
            **extra,
        )
        for i in range(count)
    ]
    return [r["id"] for r in batch(anchor, items)]


def test_batch_results_per_item(server, anchor):
    kind = unique("Order")
    with client_for(server, token("svc", "CLIENT", ["clt_A"], WRITER)) as writer:
        results = batch(
            writer,
            [
                {
                    "entityType": kind,
                    "entityId": "o-1",
                    "operation": "CreateOrderCommand",
                    "operationData": {"total": 12.5, "lines": [1, 2]},
                    "principalId": "prn_USER",
                    "performedAt": "2026-03-01T10:00:00+02:00",
                    "applicationCode": "shop",
                },
                {"entityType": kind, "entityId": "o-2"},  # no operation
                {  # the RS SDK's snake_case payload, operation data stringified
                    "entity_type": kind,
                    "entity_id": "o-3",
                    "operation": "ShipOrderCommand",
                    "operation_json": '{"carrier":"dhl"}',
                    "performed_at": "2026-03-01T09:00:00Z",
                },
                {"entityType": kind, "entityId": "o-4", "operation": "X", "clientCode": "clt_B"},
                {"entityType": kind, "entityId": "o-5", "operation": "X", "performedAt": "soon"},
                "not an object",
            ],
        )
    first, third = results[0]["id"], results[2]["id"]
    assert AUD_ID.match(first) and AUD_ID.match(third)
    assert results == [
        {"id": first, "status": "SUCCESS"},
        {"id": "", "status": "BAD_REQUEST", "error": "items[1].operation: is required"},
        {"id": third, "status": "SUCCESS"},
        {"id": "", "status": "SKIPPED", "error": "svc has no access to client clt_B"},
        {
            "id": "",
            "status": "BAD_REQUEST",
            "error": "items[4].performedAt: 'soon' is not an RFC 3339 timestamp (e.g. 2026-05-24T08:30:00Z)",
        },
        {"id": "", "status": "BAD_REQUEST", "error": "items[5] must be a JSON object"},
    ]
    assert anchor.get("/api/audit-logs/" + first).json() == {
        "id": first,
        "entityType": kind,
        "entityId": "o-1",
        "operation": "CreateOrderCommand",
        "operationJson": {"total": 12.5, "lines": [1, 2]},
        "principalId": "prn_USER",
        "applicationId": "shop",
        "clientId": "clt_A",  # the caller's client, by default
        "performedAt": "2026-03-01T08:00:00.000000Z",
    }
    assert anchor.get("/api/audit-logs/" + third).json()["operationJson"] == {"carrier": "dhl"}
    assert len(anchor.get("/api/audit-logs?entityType=" + kind).json()) == 2


def test_batch_limits(anchor):
    assert anchor.post("/api/audit-logs/batch", json={"items": []}).json() == {"results": []}
    item = {"entityType": "T", "entityId": "1", "operation": "O"}
    too_many = anchor.post("/api/audit-logs/batch", json={"items": [item] * 101})
    assert too_many.status_code == 400 and too_many.json()["field"] == "items"
    assert len(batch(anchor, [item] * 100)) == 100
    missing = anchor.post("/api/audit-logs/batch", json={"logs": [item]})
    assert missing.status_code == 400 and missing.json()["field"] == "items"
    assert anchor.post("/api/audit-logs/batch", content=b"[").status_code == 400


def test_pages_newest_first(anchor):
    kind = unique("Paged")
    ids = record_many(anchor, kind, 7)
    seen = []
    url = "/api/audit-logs?size=3&entityType=" + kind
    while url:
        reply = anchor.get(url)
        assert reply.status_code == 200
        seen.append([log["id"] for log in reply.json()])
        cursor = reply.headers.get("X-Next-Cursor")
        if cursor:
            link = re.match(r'^<(.+)>; rel="next"$', reply.headers["Link"]).group(1)
            assert "cursor=" + cursor in link and "entityType=" + kind in link
        url = link if cursor else None
    newest_first = ids[::-1]
    assert seen == [newest_first[0:3], newest_first[3:6], newest_first[6:]]


def test_filters(anchor):
    kind = unique("Filtered")
    ids = record_many(anchor, kind, 6, principalId="prn_F")

    def found(query):
        reply = anchor.get("/api/audit-logs?entityType=%s&%s" % (kind, query))
        assert reply.status_code == 200, reply.text
        return [log["id"] for log in reply.json()][::-1]

    assert found("entityId=e1") == [ids[1], ids[3], ids[5]]
    assert found("operation=Op0") == [ids[0], ids[3]]
    assert found("principalId=prn_F") == ids
    assert found("principalId=prn_OTHER") == []
    assert found("from=2026-03-01T10:00:02Z&to=2026-03-01T10:00:04Z") == [ids[2], ids[3]]
    for query, field in (("from=yesterday", "from"), ("to=1", "to"), ("cursor=abc", "cursor")):
        reply = anchor.get("/api/audit-logs?" + query)
        assert reply.status_code == 400 and reply.json()["field"] == field, query


def test_admin_changes_are_in_the_trail(anchor):
    pool = anchor.post("/api/dispatch-pools", json={"code": unique("audited"), "name": "p"})
    logs = anchor.get("/api/audit-logs?entityType=DispatchPool&entityId=" + pool.json()["id"])
    [log] = logs.json()
    assert (log["operation"], log["principalId"]) == ("CreateDispatchPoolCommand", "anchor-user")


def test_tenants_and_permissions(server, anchor):
    kind = unique("Tenant")
    [anchor_level] = record_many(anchor, kind, 1)
    [for_a] = record_many(anchor, kind, 1, clientCode="clt_A")
    [for_b] = record_many(anchor, kind, 1, clientId="clt_B")
    with client_for(server, token("val", "CLIENT", ["clt_A"], VIEWER)) as viewer:
        assert [log["id"] for log in viewer.get("/api/audit-logs?entityType=" + kind).json()] == [
            for_a
        ]
        assert viewer.get("/api/audit-logs/" + for_a).status_code == 200
        for id in (anchor_level, for_b):
            assert viewer.get("/api/audit-logs/" + id).json()["error"] == "FORBIDDEN"
        refused = viewer.post("/api/audit-logs/batch", json={"items": []})
        assert refused.status_code == 403 and refused.json()["error"] == "FORBIDDEN"
    with client_for(server, token("svc", "CLIENT", ["clt_A"], WRITER)) as writer:
        assert writer.get("/api/audit-logs").status_code == 403
    assert anchor.get("/api/audit-logs/aud_NOPE").json() == {
        "error": "NOT_FOUND",
        "message": "audit log aud_NOPE not found",
    }
