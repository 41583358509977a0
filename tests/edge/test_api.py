"""The edge API against a real EdgeApp: health probes, metrics, the overview routes, and how
errors are answered (404, 405, 413, 500, bad JSON)."""

import socket

import pytest

from flowcatalyst.edge.api import MAX_BODY
from flowcatalyst.edge.api_common import route
from tests.support.edgeapp import EdgeRunner, pointer


@pytest.fixture
def edge(tmp_path):
    with EdgeRunner(tmp_path) as runner:
        yield runner


def test_health_probes(edge):
    with edge.client() as c:
        for path in ("/health", "/q/health"):
            r = c.get(path)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/json")
            assert r.json() == {"status": "UP", "version": edge.app.version}
        for path in ("/health/live", "/q/health/live"):
            assert c.get(path).json() == {"status": "LIVE"}
        for path in ("/health/ready", "/health/startup", "/q/health/ready"):
            r = c.get(path)
            assert (r.status_code, r.json()) == (200, {"status": "READY"})


def test_readiness_fails_when_a_queue_is_down_and_counts_broker_checks(edge):
    with edge.client() as c:
        assert c.get("/health/ready").status_code == 200
        edge.call(edge.router.consumers["default"].consumer.stop())
        r = c.get("/health/ready")
        assert (r.status_code, r.json()) == (503, {"status": "NOT_READY"})
        text = c.get("/metrics").text
    assert "flowcatalyst_broker_connection_attempts 2" in text
    assert "flowcatalyst_broker_connection_successes 1" in text
    assert "flowcatalyst_broker_connection_failures 1" in text
    assert "flowcatalyst_broker_available 0" in text


def test_degraded_router_is_reported_and_not_ready(edge):
    edge.run(lambda: edge.router.warnings.add("RESOURCE", "CRITICAL", "disk full", "test"))
    with edge.client() as c:
        assert c.get("/health").json()["status"] == "DEGRADED"
        assert c.get("/health/ready").status_code == 503
        assert c.get("/health/live").status_code == 200
        monitoring = c.get("/monitoring/health").json()
    assert monitoring["status"] == "DEGRADED"
    assert monitoring["details"]["degradationReason"] == "1 critical warnings"


def test_metrics_are_prometheus_text_with_the_fc_series(edge, target):
    with edge.client() as c:
        r = c.post("/api/messages", json=pointer(target.url("/ok"), "m-1"))
        assert r.status_code == 200
        target.wait_for(1, "/ok")
        edge.wait_until(lambda: edge.router.is_idle(), what="delivery to finish")
        r = c.get("/metrics")
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = r.text
        assert c.get("/q/metrics").text.startswith("# HELP")
    for series in (
        'fc_messages_processed_total{pool="DEFAULT",success="true",result="SUCCESS"} 1',
        'fc_messages_submitted_total{pool="DEFAULT"} 1',
        'fc_pool_concurrency{pool="DEFAULT"} 10',
        'fc_queue_messages_total{queue="default",outcome="acked"} 1',
        'fc_queue_pending_messages{queue="default"} 0',
        'fc_api_messages_published_total{queue="default",status="ACCEPTED"} 1',
        "fc_in_pipeline_messages 0",
        "# TYPE fc_mediation_duration_seconds histogram",
        "# TYPE flowcatalyst_broker_available gauge",
    ):
        assert series in text, series


def test_monitoring_overview_shapes(edge):
    with edge.client() as c:
        m = c.get("/monitoring").json()
        assert m["status"] == "HEALTHY" and m["version"] == edge.app.version
        assert m["health_report"] == {
            "status": "Healthy",
            "pools_healthy": 1,
            "pools_unhealthy": 0,
            "consumers_healthy": 1,
            "consumers_unhealthy": 0,
            "active_warnings": 0,
            "critical_warnings": 0,
            "issues": [],
        }
        assert [p["pool_code"] for p in m["pool_stats"]] == ["DEFAULT"]
        assert (m["active_warnings"], m["critical_warnings"]) == (0, 0)

        h = c.get("/monitoring/health").json()
        assert set(h) == {"status", "timestamp", "uptimeMillis", "details"}
        assert h["timestamp"].endswith("Z") and h["uptimeMillis"] >= 0
        assert h["details"] == {
            "totalQueues": 1,
            "healthyQueues": 1,
            "totalPools": 1,
            "healthyPools": 1,
            "activeWarnings": 0,
            "criticalWarnings": 0,
            "circuitBreakersOpen": 0,
            "degradationReason": None,
        }

        pools = c.get("/monitoring/pools").json()
        assert set(pools[0]) == {
            "pool_code",
            "concurrency",
            "active_workers",
            "queue_size",
            "queue_capacity",
            "message_group_count",
            "rate_limit_per_minute",
            "is_rate_limited",
            "metrics",
        }
        assert set(pools[0]["metrics"]) >= {"totalSuccess", "totalFailure", "successRate", "processingTime", "last5Min", "last30Min"}

        assert c.get("/monitoring/queues").json() == [
            {"queue_identifier": "default", "pending_messages": 0, "in_flight_messages": 0, "delayed_messages": 0, "dead_letters": 0}
        ]
        config = c.get("/api/config").json()
        assert config["processingPools"] == [{"code": "DEFAULT", "concurrency": 10, "rateLimitPerMinute": None}]
        assert [q["queueName"] for q in config["queues"]] == ["default"]

        health = c.get("/monitoring/consumer-health").json()
        consumer = health["consumers"]["default"]
        assert consumer["isHealthy"] is True and consumer["isRunning"] is True
        assert consumer["queueIdentifier"] == consumer["consumerQueueIdentifier"] == "default"
        if consumer["lastPollTimeMs"] != -1:  # an epoch time, not the elapsed time RS gave
            assert abs(consumer["lastPollTimeMs"] - health["currentTimeMs"]) < 60000
            assert consumer["lastPollTimeMs"] > 1_600_000_000_000

        assert c.post("/monitoring/broker-stats/refresh").json() == {"refreshed": True, "ageSeconds": 0}


def test_unknown_route_and_wrong_method_answer_json(edge):
    with edge.client() as c:
        r = c.get("/no/such/route")
        assert r.status_code == 404
        assert r.json() == {"error": "not_found", "message": "no route GET /no/such/route"}
        r = c.delete("/monitoring/pools")
        assert r.status_code == 405
        assert r.json()["error"] == "method_not_allowed"
        assert r.headers["allow"] == "GET"
        r = c.get("/api/messages")
        assert (r.status_code, r.headers["allow"]) == (405, "POST")
        r = c.request("OPTIONS", "/monitoring")
        assert (r.status_code, r.headers["allow"]) == (405, "GET")


def test_malformed_json_and_wrong_body_types(edge):
    with edge.client() as c:
        r = c.post("/api/messages", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_json"
        r = c.post("/api/messages", content=b"")
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        r = c.put("/monitoring/pools/X", json=[1, 2])
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")


def test_a_body_over_the_limit_is_refused_with_413(edge):
    with edge.client() as c:
        r = c.post("/api/messages", content=b" " * (MAX_BODY + 1), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"] == "payload_too_large"
        assert c.get("/health").status_code == 200  # still serving


def test_a_body_announced_too_large_is_refused_before_it_is_sent(edge):
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as s:
        s.sendall(b"POST /api/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{" % (MAX_BODY * 10))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.split(b"\r\n")[0].split(b" ")[1] == b"413"


def test_a_failing_handler_answers_500_json_and_the_server_goes_on(edge):
    def add_route():
        @route(edge.app.api, "/test/boom")
        async def boom(req):
            raise RuntimeError("kaput")

    edge.run(add_route)
    with edge.client() as c:
        r = c.get("/test/boom")
        assert r.status_code == 500
        assert r.json()["error"] == "internal_error"
        assert "kaput" not in r.text  # the details are in the log, not in the answer
        assert c.get("/health").status_code == 200


def test_dashboard_placeholder(edge):
    with edge.client() as c:
        for path in ("/dashboard", "/dashboard.html"):
            r = c.get(path)
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/html")
            assert "FlowCatalyst" in r.text


def test_an_unreadable_request_is_a_400_and_the_server_goes_on(edge):
    with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as s:
        s.sendall(b"NONSENSE\r\n\r\n")
        answer = b""
        while True:  # the server closes the connection after its answer
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.split(b"\r\n")[0].split(b" ")[1] == b"400"
    assert b'"error":"bad_request"' in answer
    with edge.client() as c:
        assert c.get("/health").status_code == 200
