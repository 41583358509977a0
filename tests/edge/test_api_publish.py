"""Publishing through the API into a real EdgeApp, and delivery to real HTTP targets:
POST /api/messages (single, batch, invalid items, duplicates, queues, limits), the RS routes
POST /messages and POST /api/seed/messages, and the mock targets."""

import pytest

from tests.support.edgeapp import EdgeRunner, pointer

TWO_QUEUES = {
    "processingPools": [{"code": "P", "concurrency": 4}],
    "queues": [{"queueName": "first"}, {"queueName": "second"}],
}


@pytest.fixture
def edge(tmp_path):
    with EdgeRunner(tmp_path) as runner:
        yield runner


def test_one_pointer_is_accepted_committed_and_delivered(edge, target):
    with edge.client() as c:
        r = c.post("/api/messages", json=pointer(target.url("/ok"), "order-1", payload={"order": 1}, headers={"X-Trace": "t1"}))
    assert r.status_code == 200
    assert r.json() == {
        "queue": "default",
        "accepted": 1,
        "duplicates": 0,
        "invalid": 0,
        "results": [{"index": 0, "id": "order-1", "status": "ACCEPTED"}],
    }
    [request] = target.wait_for(1, "/ok")
    assert request.json() == {"order": 1}  # the pointer's payload is the body
    assert request.headers["x-trace"] == "t1"


def test_a_batch_reports_each_item_and_stores_only_the_valid_ones(edge, target):
    items = [
        pointer(target.url("/ok"), "b-0"),
        pointer("ftp://example.com/x", "b-1"),
        {"id": "b-2", "mediationType": "HTTP"},
        "not an object",
        pointer(target.url("/ok"), "b-0"),  # the same id again: a duplicate
        pointer(target.url("/ok"), "b-5", dispatchMode="BLOCK_ON_ERROR", messageGroupId="g"),
    ]
    with edge.client() as c:
        r = c.post("/api/messages", json={"messages": items})
    assert r.status_code == 200
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["invalid"]) == (2, 1, 3)
    results = body["results"]
    assert results[0] == {"index": 0, "id": "b-0", "status": "ACCEPTED"}
    assert results[1]["status"] == "INVALID" and results[1]["field"] == "mediationTarget"
    assert "http://" in results[1]["reason"] and results[1]["id"] == "b-1"
    assert results[2] == {"index": 2, "id": "b-2", "status": "INVALID", "field": "mediationTarget", "reason": "is required"}
    assert results[3]["status"] == "INVALID" and results[3]["id"] is None
    assert results[4] == {"index": 4, "id": "b-0", "status": "DUPLICATE"}
    assert results[5] == {"index": 5, "id": "b-5", "status": "ACCEPTED"}
    got = target.wait_for(2, "/ok")
    assert sorted(r.json()["messageId"] for r in got) == ["b-0", "b-5"]
    with edge.client() as c:
        stats = c.get("/monitoring/queue-stats").json()["default"]
    assert (stats["totalPublished"], stats["totalDuplicates"]) == (2, 1)


def test_an_invalid_single_pointer_is_a_400_with_its_result(edge):
    with edge.client() as c:
        r = c.post("/api/messages", json={"id": "x", "mediationType": "SMTP", "mediationTarget": "http://127.0.0.1:9/"})
        assert r.status_code == 400
        body = r.json()
        assert body["error"] == "invalid_message"
        assert body["message"].startswith("mediationType: unsupported value")
        assert body["results"] == [{"index": 0, "id": "x", "status": "INVALID", "field": "mediationType", "reason": body["results"][0]["reason"]}]
        assert c.get("/monitoring/queue-stats").json()["default"]["totalPublished"] == 0


def test_republishing_an_id_is_a_duplicate(edge, target):
    with edge.client() as c:
        assert c.post("/api/messages", json=pointer(target.url("/ok"), "dup")).json()["results"][0]["status"] == "ACCEPTED"
        r = c.post("/api/messages", json={"messages": [pointer(target.url("/ok"), "dup")]})
    assert r.status_code == 200
    assert r.json()["results"] == [{"index": 0, "id": "dup", "status": "DUPLICATE"}]
    target.wait_for(1, "/ok")


@pytest.mark.parametrize(
    "body, error, fragment",
    [
        ({"messages": []}, "bad_request", "empty"),
        ({"messages": {"id": "x"}}, "bad_request", "array"),
        ([1, 2], "bad_request", "message pointer"),
        ({"messages": [{}], "queue": 7}, "bad_request", "queue must be a string"),
    ],
)
def test_malformed_requests_are_400(edge, body, error, fragment):
    with edge.client() as c:
        r = c.post("/api/messages", json=body)
    assert r.status_code == 400
    assert r.json()["error"] == error
    assert fragment in r.json()["message"]


def test_more_than_1000_messages_are_refused_and_1000_accepted(edge):
    many = [pointer("http://127.0.0.1:9/x", "m-%d" % i) for i in range(1001)]
    with edge.client() as c:
        r = c.post("/api/messages", json={"messages": many})
        assert r.status_code == 400
        assert r.json()["error"] == "too_many_messages"
        edge.call(edge.router.consumers["default"].consumer.stop())  # keep them queued
        r = c.post("/api/messages", json={"messages": many[:1000]})
        assert r.status_code == 200
        assert r.json()["accepted"] == 1000
        assert c.get("/monitoring/queues").json()[0]["pending_messages"] == 1000


def test_queue_is_chosen_by_body_or_query_and_unknown_queue_is_404(tmp_path, target):
    with EdgeRunner(tmp_path, config=TWO_QUEUES) as edge, edge.client() as c:
        r = c.post("/api/messages", json={"messages": [pointer(target.url("/ok"), "q-1", poolCode="P")], "queue": "second"})
        assert r.json()["queue"] == "second"
        r = c.post("/api/messages?queue=second", json=pointer(target.url("/ok"), "q-2", poolCode="P"))
        assert r.json()["queue"] == "second"
        r = c.post("/api/messages", json=pointer(target.url("/ok"), "q-3", poolCode="P"))
        assert r.json()["queue"] == "first"  # the first configured queue
        r = c.post("/api/messages", json={"messages": [pointer(target.url("/ok"), "q-4")], "queue": "nope"})
        assert r.status_code == 404
        assert r.json()["error"] == "unknown_queue"
        assert "first, second" in r.json()["message"]
        r = c.post("/api/messages?queue=first", json={"messages": [pointer(target.url("/ok"), "q-5")], "queue": "second"})
        assert r.status_code == 400
        target.wait_for(3, "/ok")
        stats = c.get("/monitoring/queue-stats").json()
        assert (stats["first"]["totalPublished"], stats["second"]["totalPublished"]) == (1, 2)


def test_rs_messages_route_delivers_the_payload(edge, target):
    with edge.client() as c:
        r = c.post("/messages", json={"payload": {"hello": "world"}, "mediation_target": target.url("/ok"), "message_group_id": "g1"})
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "ACCEPTED" and len(body["message_id"]) == 36
        [request] = target.wait_for(1, "/ok")
        assert request.json() == {"hello": "world"}

        r = c.post("/messages", json={"payload": {}})
        assert r.status_code == 400 and "mediation_target is required" in r.json()["message"]
        r = c.post("/messages", json={"mediation_target": target.url("/ok")})
        assert r.status_code == 400 and "payload is required" in r.json()["message"]
        r = c.post("/messages", json={"payload": 1, "mediation_target": "nope"})
        assert r.status_code == 400
        assert (r.json()["error"], r.json()["field"]) == ("invalid_message", "mediation_target")


def test_seed_targets_the_edge_itself_on_its_real_port(edge):
    with edge.client() as c:
        assert c.post("/api/test/stats/reset").json()["currentCount"] == 0
        r = c.post("/api/seed/messages", json={"count": 12, "endpoint": "success", "messageGroupMode": "unique"})
        assert r.status_code == 200
        body = r.json()
        assert (body["status"], body["messagesSent"], body["totalRequested"], body["queue"]) == ("success", 12, 12, "default")
        assert body["target"] == "http://127.0.0.1:%d/api/test/success" % edge.port
        edge.wait_until(lambda: edge.router.metrics.processed.get(("DEFAULT", "true", "SUCCESS")) == 12, what="12 deliveries")
        assert c.get("/api/test/stats").json() == {"totalRequests": 12}
        assert c.get("/api/benchmark/stats").json() == {"totalRequests": 12}
        assert c.post("/api/benchmark/reset").json() == {"previousCount": 12, "currentCount": 0}
        assert c.post("/api/seed/messages", json={"count": 0}).status_code == 400
        assert c.post("/api/seed/messages", json={"count": 1001}).status_code == 400
        assert c.post("/api/seed/messages", json={"queue": "nope"}).status_code == 404


def test_seed_honours_the_queue(tmp_path):
    with EdgeRunner(tmp_path, config=TWO_QUEUES) as edge, edge.client() as c:
        r = c.post("/api/seed/messages", json={"count": 3, "queue": "second", "endpoint": "fast", "poolCode": "P"})
        assert r.json()["queue"] == "second"
        edge.wait_until(lambda: edge.router.metrics.processed.get(("P", "true", "SUCCESS")) == 3, what="3 deliveries")
        stats = c.get("/monitoring/queue-stats").json()
        assert (stats["first"]["totalPublished"], stats["second"]["totalPublished"]) == (0, 3)
        assert stats["second"]["totalConsumed"] == 3


def test_mock_targets_answer_as_rs(edge):
    with edge.client() as c:
        c.post("/api/test/stats")
        expected = {
            "/api/test/fast?delayMs=0": (200, {"status": "success", "ack": True}),
            "/api/benchmark/process?delayMs=0": (200, {"status": "success", "ack": True}),
            "/api/test/slow?delayMs=1": (200, {"status": "success", "ack": True}),
            "/api/benchmark/process-slow?delayMs=1": (200, {"status": "success", "ack": True}),
            "/api/test/fail": (500, {"status": "error", "error": "Always fails"}),
            "/api/test/success": (200, {"ack": True, "message": ""}),
            "/api/test/pending": (200, {"ack": False, "message": "notBefore time not reached"}),
            "/api/test/client-error": (400, {"status": "error", "error": "Record not found"}),
            "/api/test/server-error": (500, {"status": "error", "error": "Internal server error"}),
        }
        for path, (status, body) in expected.items():
            r = c.post(path, json={"messageId": "x"})
            assert (r.status_code, r.json()) == (status, body), path
        statuses = {c.post("/api/test/faulty").status_code for _ in range(40)}
        assert statuses <= {200, 400, 500} and 200 in statuses
        assert c.get("/api/test/stats").json() == {"totalRequests": len(expected) + 40}
        assert c.post("/api/test/stats").json() == {"previousCount": len(expected) + 40, "currentCount": 0}
        assert c.post("/api/test/fast?delayMs=x").status_code == 400
