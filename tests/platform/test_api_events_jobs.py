"""The events and dispatch-jobs routes: status codes, JSON shapes, filters, cursor pages,
tenant scoping, requeue and cancel — on SQLite and PostgreSQL, with JWT auth."""

import time

import httpx
import jwt
import pytest

from flowcatalyst.server.platform import jobs
from tests.support.edgeapp import eventually
from tests.support.platform import PlatformRunner
from tests.support.postgres import FreshDatabase

SECRET = "test-jwt-secret-0123456789abcdef"
SERVICE = "service-token-0123456789"
TYPE = "shop:orders:order:created"


def token(sub="user", scope="CLIENT", clients=(), roles=()):
    claims = {
        "sub": sub,
        "scope": scope,
        "clients": list(clients),
        "roles": list(roles),
        "exp": time.time() + 600,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    db = FreshDatabase() if request.param == "postgres" else None
    runner = PlatformRunner(
        tmp,
        db.url if db else None,
        auth="JWT",
        jwt_secret=SECRET,
        service_tokens={SERVICE: "admin"},
        router_enabled=False,
        scheduler_enabled=False,
    ).start()
    yield runner
    runner.stop()
    if db is not None:
        db.drop()


def client(server, bearer=SERVICE):
    return httpx.Client(
        base_url=server.url(""), headers={"Authorization": "Bearer " + bearer}, timeout=10
    )


def test_publish_one_event_and_read_it_back(server):
    with client(server) as c:
        created = c.post(
            "/api/events", json={"type": TYPE, "source": "shop", "data": {"n": 1}, "subject": "o-1"}
        )
        assert created.status_code == 201
        body = created.json()
        assert body["isDuplicate"] is False and body["dispatchJobCount"] == 0
        event = body["event"]
        assert event["type"] == TYPE and event["data"] == {"n": 1} and event["specVersion"] == "1.0"
        assert c.get("/api/events/%s" % event["id"]).json() == event
        assert c.get("/api/events/0NOSUCHEVENT0").status_code == 404
        assert c.get("/api/events/0NOSUCHEVENT0").json()["error"] == "NOT_FOUND"
        bad = c.post("/api/events", json={"type": "a:b", "source": "s"})
        assert bad.status_code == 400 and bad.json()["field"] == "type"
        assert c.post("/api/events", content=b"{nope").status_code == 400


def test_deduplication_answers_the_first_event(server):
    with client(server) as c:
        first = c.post("/api/events", json={"type": TYPE, "deduplicationId": "dedup-1", "data": 1})
        again = c.post("/api/events", json={"type": TYPE, "deduplicationId": "dedup-1", "data": 2})
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["isDuplicate"] is True
        assert again.json()["event"]["id"] == first.json()["event"]["id"]
        assert again.json()["event"]["data"] == 1


def test_event_list_filters_and_cursor_pages(server):
    with client(server) as c:
        items = [
            {
                "type": "billing:invoices:invoice:paid",
                "source": "billing",
                "data": {"i": i},
                "correlationId": "corr-page",
            }
            for i in range(5)
        ]
        ids = [
            r["id"] for r in c.post("/api/events/batch", json={"items": items}).json()["results"]
        ]
        eventually(
            lambda: len(c.get("/api/events", params={"correlationId": "corr-page"}).json()) == 5,
            what="the projection",
        )
        page = c.get("/api/events", params={"correlationId": "corr-page", "size": 2})
        assert page.status_code == 200 and len(page.json()) == 2
        assert page.headers["Link"].endswith('rel="next"')
        seen = [e["id"] for e in page.json()]
        while "X-Next-Cursor" in page.headers:
            page = c.get(
                "/api/events",
                params={
                    "correlationId": "corr-page",
                    "size": 2,
                    "cursor": page.headers["X-Next-Cursor"],
                },
            )
            seen += [e["id"] for e in page.json()]
        assert sorted(seen) == sorted(ids) and len(seen) == 5  # every event once, newest first
        row = c.get("/api/events", params={"applications": "billing", "size": 1}).json()[0]
        assert set(row) == {
            "id", "type", "source", "subject", "time", "application", "subdomain", "aggregate",
            "messageGroup", "correlationId", "clientId", "projectedAt",
        }  # fmt: skip
        assert (row["application"], row["subdomain"], row["aggregate"]) == (
            "billing",
            "invoices",
            "invoice",
        )
        assert c.get("/api/events", params={"types": "no:such:type:here"}).json() == []
        assert c.get("/api/events", params={"cursor": "garbage"}).status_code == 400


def test_clients_see_only_their_events(server):
    with client(server) as c:
        for client_id in ("clt_A", "clt_B"):
            c.post(
                "/api/events",
                json={"type": TYPE, "clientId": client_id, "correlationId": "tenancy"},
            )
    a = token("alice", clients=["clt_A"], roles=["platform:messaging-viewer", "platform:publisher"])
    with client(server, a) as c:
        eventually(
            lambda: (
                [
                    e["clientId"]
                    for e in c.get("/api/events", params={"correlationId": "tenancy"}).json()
                ]
                == ["clt_A"]
            ),
            what="alice's view",
        )
        assert c.get("/api/events", params={"clientIds": "clt_B"}).status_code == 403
        mine = c.post("/api/events", json={"type": TYPE})  # defaults to her client
        assert mine.status_code == 201 and mine.json()["event"]["clientId"] == "clt_A"
        theirs = c.post("/api/events", json={"type": TYPE, "clientId": "clt_B"})
        assert theirs.status_code == 403 and theirs.json()["error"] == "FORBIDDEN"
        batch = c.post(
            "/api/events/batch", json={"items": [{"type": TYPE, "clientId": "clt_B"}]}
        ).json()
        assert batch["results"][0]["status"] == "FORBIDDEN"
    nobody = token("bob", clients=["clt_A"])
    with client(server, nobody) as c:
        assert c.get("/api/events").status_code == 403


def insert_job(server, status, **fields):
    job = jobs.new_job(TYPE, "http://127.0.0.1:9/hook", status=status, **fields)

    async def unit(tx):
        await jobs.insert_jobs(tx, [job])

    server.write(unit)
    return job["id"]


def test_job_routes_shapes_and_codes(server):
    with client(server) as c:
        created = c.post(
            "/api/dispatch-jobs",
            json={
                "code": TYPE,
                "targetUrl": "http://127.0.0.1:9/x",
                "payload": {"a": 1},
                "idempotencyKey": "one",
            },
        )
        assert created.status_code == 201
        job = created.json()
        assert job["status"] == "PENDING" and job["attemptCount"] == 0 and "payload" not in job
        assert (
            c.post(
                "/api/dispatch-jobs",
                json={"code": TYPE, "targetUrl": "http://127.0.0.1:9/x", "idempotencyKey": "one"},
            ).json()["id"]
            == job["id"]
        )
        assert c.get("/api/dispatch-jobs/%s" % job["id"]).json()["id"] == job["id"]
        assert c.get("/api/dispatch-jobs/%s/raw" % job["id"]).json()["payload"] == '{"a":1}'
        assert c.get("/api/dispatch-jobs/%s/attempts" % job["id"]).json() == []
        assert c.get("/api/dispatch-jobs/0NOSUCHJOB000").status_code == 404
        assert c.get("/api/dispatch-jobs/0NOSUCHJOB000/attempts").status_code == 404
        assert c.get("/api/dispatch-jobs", params={"statuses": "SIDEWAYS"}).status_code == 400
        eventually(
            lambda: [
                j["id"]
                for j in c.get("/api/dispatch-jobs", params={"eventId": "", "codes": TYPE}).json()
            ],
            what="the job in the read model",
        )
        listed = c.get("/api/dispatch-jobs", params={"statuses": "PENDING", "codes": TYPE}).json()
        assert job["id"] in [j["id"] for j in listed]
        assert {"isCompleted", "isTerminal", "application"} <= set(listed[0])


def test_requeue_and_cancel(server):
    with client(server) as c:
        failed = insert_job(server, "FAILED", attempt_count=3, message_group="rq")
        pending = insert_job(server, "PENDING", message_group="rq")
        answer = c.post("/api/dispatch-jobs/%s/requeue" % failed)
        assert (answer.status_code, answer.json()) == (200, {"count": 1})
        job = c.get("/api/dispatch-jobs/%s" % failed).json()
        assert (job["status"], job["attemptCount"], job["completedAt"]) == ("PENDING", 0, None)
        again = c.post("/api/dispatch-jobs/%s/requeue" % failed)
        assert again.status_code == 409 and again.json()["error"] == "INVALID_JOB_STATUS"
        assert c.post("/api/dispatch-jobs/0NOSUCHJOB000/cancel").status_code == 404
        cancelled = c.post("/api/dispatch-jobs/cancel", json={"messageGroup": "rq"})
        assert cancelled.json() == {"count": 2}
        assert c.get("/api/dispatch-jobs/%s" % pending).json()["status"] == "CANCELLED"
        by_filter = c.post(
            "/api/dispatch-jobs/requeue", json={"statuses": ["CANCELLED"], "messageGroup": "rq"}
        )
        assert by_filter.json() == {"count": 2}
        assert c.post("/api/dispatch-jobs/requeue", json={}).status_code == 400
        bad = c.post("/api/dispatch-jobs/requeue", json={"statuses": ["NOPE"]})
        assert bad.status_code == 400 and bad.json()["field"] == "statuses[0]"


def test_operating_on_jobs_needs_the_permission_and_the_client(server):
    theirs = insert_job(server, "FAILED", client_id="clt_B")
    viewer = token("vic", clients=["clt_A"], roles=["platform:messaging-viewer"])
    with client(server, viewer) as c:
        assert c.post("/api/dispatch-jobs/%s/requeue" % theirs).status_code == 403
        assert c.get("/api/dispatch-jobs/%s" % theirs).status_code == 403
    admin = token("ann", clients=["clt_A"], roles=["platform:messaging-admin"])
    with client(server, admin) as c:
        assert c.post("/api/dispatch-jobs/%s/requeue" % theirs).status_code == 403
        # a filter only ever reaches the caller's own clients
        assert (
            c.post("/api/dispatch-jobs/requeue", json={"statuses": ["FAILED"]}).json()["count"] == 0
        )
