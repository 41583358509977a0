"""Monitoring routes that change or inspect the running router, against a real EdgeApp and real
targets: pool resizing, circuit breakers, warnings, messages in flight, queue and pool
statistics."""

import asyncio
import threading
from urllib.parse import quote

import pytest

from tests.support.edgeapp import EdgeRunner, eventually, pointer


@pytest.fixture
def edge(tmp_path):
    with EdgeRunner(tmp_path) as runner:
        yield runner


def publish(c, *pointers):
    r = c.post("/api/messages", json={"messages": list(pointers)})
    assert r.status_code == 200 and r.json()["accepted"] == len(pointers), r.text
    return r.json()


# -- pools ------------------------------------------------------------------------------------


def test_put_pool_resizes_the_same_pool_in_place(edge):
    before = edge.run(lambda: edge.router.pools["DEFAULT"])
    with edge.client() as c:
        r = c.put("/monitoring/pools/DEFAULT", json={"concurrency": 3, "rate_limit_per_minute": 600})
        assert (r.status_code, r.json()) == (200, {"success": True, "pool_code": "DEFAULT", "new_config": {"concurrency": 3, "rate_limit_per_minute": 600}})
        assert edge.run(lambda: edge.router.pools["DEFAULT"]) is before
        assert (before.concurrency, before.limiter.rpm) == (3, 600)
        [stats] = c.get("/monitoring/pools").json()
        assert (stats["concurrency"], stats["rate_limit_per_minute"], stats["queue_capacity"]) == (3, 600, 60)

        r = c.put("/monitoring/pools/DEFAULT", json={"concurrency": 5})  # the rate limit stays
        assert r.json()["new_config"] == {"concurrency": 5, "rate_limit_per_minute": 600}
        r = c.put("/monitoring/pools/DEFAULT", json={"rate_limit_per_minute": None})  # null clears it
        assert r.json()["new_config"] == {"concurrency": 5, "rate_limit_per_minute": None}
        assert edge.run(lambda: edge.router.pools["DEFAULT"]) is before
        assert before.limiter.rpm is None
        assert c.get("/api/config").json()["processingPools"] == [{"code": "DEFAULT", "concurrency": 5, "rateLimitPerMinute": None}]


def test_put_unknown_pool_creates_it_and_messages_go_there(edge, target):
    with edge.client() as c:
        r = c.put("/monitoring/pools/NEW-POOL", json={})
        assert r.json() == {"success": True, "pool_code": "NEW-POOL", "new_config": {"concurrency": 10, "rate_limit_per_minute": None}}
        r = c.put("/monitoring/pools/" + quote("with space", safe=""), json={"concurrency": 2})
        assert r.json()["pool_code"] == "with space"
        assert sorted(p["pool_code"] for p in c.get("/monitoring/pools").json()) == ["DEFAULT", "NEW-POOL", "with space"]
        publish(c, pointer(target.url("/ok"), "to-new", poolCode="NEW-POOL"))
        target.wait_for(1, "/ok")
        edge.wait_until(lambda: edge.router.pools["NEW-POOL"].metrics.total_success == 1, what="delivery through NEW-POOL")
        assert c.get("/monitoring/warnings").json() == []  # routed, not redirected to the default pool


@pytest.mark.parametrize("body", [{"concurrency": -1}, {"concurrency": "ten"}, {"concurrency": True}, {"rate_limit_per_minute": 1.5}])
def test_put_pool_refuses_bad_values(edge, body):
    with edge.client() as c:
        r = c.put("/monitoring/pools/DEFAULT", json=body)
    assert r.status_code == 400
    assert r.json()["success"] is False and r.json()["error"] == "bad_request"


# -- circuit breakers -------------------------------------------------------------------------


def test_a_failing_target_opens_its_breaker_which_can_be_read_and_reset(edge, target):
    url = target.url("/status/500")
    with edge.client() as c:
        publish(c, *[pointer(url, "cb-%d" % i) for i in range(10)])
        breaker = eventually(lambda: c.get("/monitoring/circuit-breakers").json().get(url, {}).get("state") == "OPEN", timeout=15, what="the breaker to open")
        stats = c.get("/monitoring/circuit-breakers").json()[url]
        assert set(stats) == {"name", "state", "successfulCalls", "failedCalls", "rejectedCalls", "failureRate", "bufferedCalls", "bufferSize"}
        assert stats["failedCalls"] >= 5 and stats["failureRate"] == 100.0
        encoded = quote(url, safe="")
        assert c.get("/monitoring/circuit-breakers/%s/state" % encoded).json() == {"name": url, "state": "OPEN"}
        assert c.get("/monitoring/health").json()["details"]["circuitBreakersOpen"] == 1
        assert 'fc_circuit_breaker_open{target="%s"} 1' % url in c.get("/metrics").text

        assert c.post("/monitoring/circuit-breakers/%s/reset" % encoded).json() == {"status": "success"}
        assert c.get("/monitoring/circuit-breakers/%s/state" % encoded).json()["state"] == "CLOSED"
        assert c.post("/monitoring/circuit-breakers/reset-all").json() == {"status": "success"}

        r = c.get("/monitoring/circuit-breakers/%s/state" % quote("http://nowhere/", safe=""))
        assert (r.status_code, r.json()["error"]) == (404, "Circuit breaker not found")
        assert c.post("/monitoring/circuit-breakers/unknown/reset").status_code == 404
    assert breaker


# -- warnings ---------------------------------------------------------------------------------


def test_warnings_list_acknowledge_filter_and_clear(edge, target):
    with edge.client() as c:
        publish(c, pointer(target.url("/ok"), "w-1", poolCode="NO-SUCH-POOL"))  # a ROUTING warning
        target.wait_for(1, "/ok")
        [w] = c.get("/monitoring/warnings").json()
        assert set(w) == {"id", "timestamp", "severity", "category", "source", "message", "acknowledged", "acknowledgedAt"}
        assert (w["category"], w["severity"], w["acknowledged"]) == ("ROUTING", "WARN", False)
        assert "NO-SUCH-POOL" in w["message"]

        [raw] = c.get("/monitoring/warnings/unacknowledged").json()
        assert set(raw) == {"id", "category", "severity", "message", "source", "created_at", "acknowledged", "acknowledged_at"}
        assert [x["id"] for x in c.get("/monitoring/warnings/severity/warn").json()] == [w["id"]]
        assert c.get("/monitoring/warnings/severity/BOGUS").json() == []
        assert [x["id"] for x in c.get("/warnings", params={"category": "Routing"}).json()] == [w["id"]]
        assert c.get("/warnings", params={"category": "QUEUEHEALTH"}).json() == []

        r = c.post("/monitoring/warnings/%s/acknowledge" % w["id"])
        assert (r.status_code, r.json()) == (200, {"status": "success"})
        assert c.get("/monitoring/warnings").json()[0]["acknowledged"] is True
        assert c.get("/monitoring/warnings/unacknowledged").json() == []
        assert c.get("/warnings", params={"acknowledged": "false"}).json() == []
        r = c.post("/monitoring/warnings/nope/acknowledge")
        assert (r.status_code, r.json()["error"]) == (404, "Warning not found")

        edge.run(lambda: edge.router.warnings.add("RESOURCE", "CRITICAL", "disk full", "test"))
        assert [x["message"] for x in c.get("/warnings/critical").json()] == ["disk full"]
        critical_id = c.get("/warnings/unacknowledged").json()[0]["id"]
        assert c.post("/warnings/%s/acknowledge" % critical_id).json() == {"acknowledged": True}
        assert c.post("/warnings/nope/acknowledge").status_code == 404
        edge.run(lambda: edge.router.warnings.add("RESOURCE", "INFO", "note", "test"))
        assert c.post("/warnings/acknowledge-all").json() == {"acknowledged": 1}
        assert c.delete("/warnings/old", params={"hours": 1}).json() == {"status": "success", "removed": 0}
        assert c.delete("/warnings").json() == {"status": "success", "cleared": 3}
        assert c.get("/warnings").json() == []


# -- in flight --------------------------------------------------------------------------------


class Hold:
    """A target path that answers only when released."""

    def __init__(self):
        self.released = threading.Event()

    async def __call__(self, rec):
        while not self.released.is_set():
            await asyncio.sleep(0.01)
        return 200, {}, {"ack": True}


def test_in_flight_messages_while_a_slow_target_holds_them(edge, target):
    hold = Hold()
    target.on("/hold", hold)
    try:
        with edge.client() as c:
            publish(c, pointer(target.url("/hold"), "Slow-Message-1"), pointer(target.url("/hold"), "slow-message-2"))
            items = eventually(lambda: len(c.get("/monitoring/in-flight-messages").json()) == 2 and c.get("/monitoring/in-flight-messages").json(), what="2 in flight")
            first = items[0]
            assert set(first) == {"messageId", "brokerMessageId", "queueId", "poolCode", "elapsedTimeMs", "addedToInPipelineAt"}
            assert (first["queueId"], first["poolCode"]) == ("default", "DEFAULT")
            assert first["addedToInPipelineAt"].endswith("Z") and first["elapsedTimeMs"] >= 0
            assert [i["messageId"] for i in c.get("/monitoring/in-flight-messages", params={"messageId": "message-1"}).json()] == ["Slow-Message-1"]
            assert len(c.get("/monitoring/in-flight-messages", params={"poolCode": "default"}).json()) == 2
            assert c.get("/monitoring/in-flight-messages", params={"poolCode": "OTHER"}).json() == []
            assert len(c.get("/monitoring/in-flight-messages", params={"limit": 1}).json()) == 1
            assert c.get("/monitoring/in-flight-messages", params={"limit": "x"}).status_code == 400

            check = c.get("/monitoring/in-flight-messages/check", params={"messageId": "slow-message-2"}).json()
            assert check["inPipeline"] is True and check["detail"]["messageId"] == "slow-message-2"
            assert c.get("/monitoring/in-flight-messages/check", params={"messageId": "nope"}).json() == {"messageId": "nope", "inPipeline": False}
            assert c.get("/monitoring/in-flight-messages/check").status_code == 400
            r = c.post("/monitoring/in-flight-messages/check-batch", json={"messageIds": ["slow-message-2", "nope"]})
            assert r.json() == {"slow-message-2": True, "nope": False}
            r = c.post("/monitoring/in-flight-messages/check-batch", json={"messageIds": ["x"] * 5001})
            assert r.status_code == 400

            [pool] = c.get("/monitoring/pools").json()
            assert pool["active_workers"] == 2
            hold.released.set()
            eventually(lambda: c.get("/monitoring/in-flight-messages").json() == [], what="the pipeline to empty")
    finally:
        hold.released.set()


# -- statistics -------------------------------------------------------------------------------


def test_queue_and_pool_statistics(edge, target):
    with edge.client() as c:
        publish(c, pointer(target.url("/ok"), "s-1"), pointer(target.url("/ok"), "s-2"), pointer(target.url("/status/404"), "s-3"))
        edge.wait_until(lambda: edge.router.is_idle() and edge.router.pools["DEFAULT"].metrics.total_failure == 1, what="3 deliveries")
        for window in (None, "5min", "5m", "30min", "30m", "all"):
            stats = c.get("/monitoring/queue-stats", params={"time_window": window} if window else {}).json()["default"]
            assert stats == {
                "name": "default",
                "totalMessages": 3,
                "totalConsumed": 3,  # a target's 404 is answered with an ack: the message is dropped
                "totalFailed": 0,
                "totalDeferred": 0,
                "successRate": 1.0,
                "currentSize": 0,
                "throughput": stats["throughput"],
                "pendingMessages": 0,
                "messagesNotVisible": 0,
                "totalPublished": 3,
                "totalDuplicates": 0,
                "totalDeadLettered": 0,
                "deadLetters": 0,
            }, window
        r = c.get("/monitoring/queue-stats", params={"time_window": "1h"})
        assert r.status_code == 400 and "time_window" in r.json()["message"]
        assert c.get("/monitoring/queue-stats", params={"refresh": "true"}).status_code == 200

        for window in (None, "5min", "30min"):
            pools = c.get("/monitoring/pool-stats", params={"time_window": window} if window else {}).json()
            p = pools["DEFAULT"]
            assert (p["poolCode"], p["totalProcessed"], p["totalSucceeded"], p["totalFailed"], p["totalRateLimited"]) == ("DEFAULT", 3, 2, 1, 0), window
            assert abs(p["successRate"] - 2 / 3) < 1e-9
            assert (p["activeWorkers"], p["availablePermits"], p["maxConcurrency"], p["queueSize"], p["maxQueueCapacity"]) == (0, 10, 10, 0, 200)
            assert p["averageProcessingTimeMs"] > 0
