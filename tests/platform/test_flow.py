"""The whole path, on SQLite and PostgreSQL: subscription -> event -> fan-out -> job ->
scheduler -> queue -> router -> /api/dispatch/process -> webhook on a real loopback target ->
job and attempts recorded. Retries, ordered groups, connection pauses and deferrals run on
short retry schedules so the tests take seconds."""

import time

import httpx
import pytest

from flowcatalyst.core import signing
from tests.support.edgeapp import eventually
from tests.support.platform import PlatformRunner, attempts_of, jobs_of, publish, subscribe
from tests.support.target import Target

FAST = {"retry_schedule": (0.2, 0.4), "scheduler_poll_interval": 0.05}


@pytest.fixture
def target():
    t = Target().start()
    yield t
    t.stop()


def wait_status(platform, subscription_id, statuses, timeout=15.0):
    """Wait until the subscription's jobs have exactly `statuses` (oldest first)."""
    eventually(
        lambda: [j["status"] for j in jobs_of(platform, subscription_id)] == list(statuses),
        timeout,
        what="jobs %s" % (statuses,),
    )
    return jobs_of(platform, subscription_id)


def test_event_is_delivered_signed_and_recorded(tmp_path, database_url, target):
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        sub = subscribe(platform, target.url("/ok"), signingSecret="s3cret-value")
        (event_id,) = publish(platform, {"data": {"order": 7}, "correlationId": "c-1"})
        (request,) = target.wait_for(1, "/ok")
        (job,) = wait_status(platform, sub["id"], ["COMPLETED"])
        # the receiver checks the signature over the raw body, as the SDKs do
        assert signing.verify(
            "s3cret-value",
            request.body,
            request.headers["x-flowcatalyst-signature"],
            request.headers["x-flowcatalyst-timestamp"],
        )
        assert request.json() == {"order": 7}  # dataOnly: the event's data as it is
        assert request.headers["x-flowcatalyst-event-id"] == event_id
        assert request.headers["x-flowcatalyst-dispatch-job-id"] == job["id"]
        assert request.headers["x-flowcatalyst-subscription-id"] == sub["id"]
        assert request.headers["x-flowcatalyst-correlation-id"] == "c-1"
        assert request.headers["x-flowcatalyst-attempt"] == "1"
        assert job["attempt_count"] == 1 and job["event_id"] == event_id
        (attempt,) = attempts_of(platform, job["id"])
        assert attempt["status"] == "SUCCESS" and attempt["response_code"] == 200
        # the read models catch up: the job's attempts through the API
        eventually(
            lambda: (
                httpx.get(platform.url("/api/dispatch-jobs"), params={"eventId": event_id}).json()
                and httpx.get(
                    platform.url("/api/dispatch-jobs"), params={"eventId": event_id}
                ).json()[0]["status"]
                == "COMPLETED"
            ),
            what="the job in the read model",
        )
        attempts = httpx.get(platform.url("/api/dispatch-jobs/%s/attempts" % job["id"])).json()
        assert [a["status"] for a in attempts] == ["SUCCESS"]


def test_envelope_and_standard_webhooks(tmp_path, database_url, target):
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        sub = subscribe(platform, target.url("/ok"), dataOnly=False, standardWebhooks=True)
        secret = sub["signingSecret"]
        assert secret.startswith("whsec_")
        publish(platform, {"data": {"n": 1}, "messageGroup": "g"})
        (request,) = target.wait_for(1, "/ok")
        (job,) = wait_status(platform, sub["id"], ["COMPLETED"])
        body = request.json()
        assert body["id"] == job["id"] and body["type"] == "shop:orders:order:created"
        assert (
            body["data"] == {"n": 1} and body["messageGroup"] == "g" and body["attemptNumber"] == 1
        )
        h = request.headers
        assert h["webhook-id"] == job["id"]
        assert signing.verify_standard(
            secret, h["webhook-id"], h["webhook-timestamp"], h["webhook-signature"], request.body
        )


def test_failing_webhook_is_retried_on_the_schedule_then_failed(tmp_path, database_url, target):
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        sub = subscribe(platform, target.url("/status/503"), maxRetries=3)
        publish(platform, {"data": {}})
        (job,) = wait_status(platform, sub["id"], ["FAILED"])
        requests = target.received("/status/503")
        assert len(requests) == 3 and job["attempt_count"] == 3
        gaps = [b.at - a.at for a, b in zip(requests, requests[1:], strict=False)]
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # the retry schedule, 0.2 s then 0.4 s
        attempts = attempts_of(platform, job["id"])
        assert [
            (a["attempt_number"], a["status"], a["response_code"], a["error_type"])
            for a in attempts
        ] == [
            (1, "FAILED", 503, "HTTP_ERROR"),
            (2, "FAILED", 503, "HTTP_ERROR"),
            (3, "FAILED", 503, "HTTP_ERROR"),
        ]
        assert job["last_error"] == "HTTP 503" and job["completed_at"]


def test_connection_refused_is_recorded_as_a_connection_error(tmp_path, database_url):
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        sub = subscribe(platform, "http://127.0.0.1:9/nothing", maxRetries=1)
        publish(platform, {"data": {}})
        (job,) = wait_status(platform, sub["id"], ["FAILED"])
        (attempt,) = attempts_of(platform, job["id"])
        assert attempt["error_type"] == "CONNECTION" and attempt["response_code"] is None


def test_block_on_error_group_is_held_until_the_failure_is_requeued(tmp_path, database_url, target):
    failing = {"on": True}
    target.on(
        "/ordered",
        lambda rec: (500, {}, {}) if failing["on"] and rec.json()["n"] == 1 else (200, {}, {}),
    )
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        sub = subscribe(platform, target.url("/ordered"), mode="BLOCK_ON_ERROR", maxRetries=2)
        publish(
            platform,
            {"data": {"n": 1}},
            {"data": {"n": 2}},
            {"data": {"n": 3}},
            messageGroup="order-1",
        )
        jobs = wait_status(platform, sub["id"], ["FAILED", "PENDING", "PENDING"])
        time.sleep(0.5)  # the scheduler polls every 50 ms: the group stays held
        assert [j["status"] for j in jobs_of(platform, sub["id"])] == [
            "FAILED",
            "PENDING",
            "PENDING",
        ]
        assert [r.json()["n"] for r in target.received("/ordered")] == [1, 1]
        failing["on"] = False
        answer = httpx.post(platform.url("/api/dispatch-jobs/%s/requeue" % jobs[0]["id"]))
        assert answer.status_code == 200 and answer.json() == {"count": 1}
        wait_status(platform, sub["id"], ["COMPLETED"] * 3)
        assert [r.json()["n"] for r in target.received("/ordered")] == [1, 1, 1, 2, 3]


def test_next_on_error_group_moves_on_past_a_failure(tmp_path, database_url, target):
    target.on("/next", lambda rec: (500, {}, {}) if rec.json()["n"] == 1 else (200, {}, {}))
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        sub = subscribe(platform, target.url("/next"), mode="NEXT_ON_ERROR", maxRetries=2)
        publish(
            platform,
            {"data": {"n": 1}},
            {"data": {"n": 2}},
            {"data": {"n": 3}},
            messageGroup="order-1",
        )
        wait_status(platform, sub["id"], ["FAILED", "COMPLETED", "COMPLETED"])
        order = [r.json()["n"] for r in target.received("/next")]
        assert order.index(2) < order.index(3) and order.count(1) == 2


def test_ordered_group_delivers_one_at_a_time_in_order(tmp_path, database_url, target):
    async def slow(rec):
        import asyncio

        await asyncio.sleep(0.02)
        return 200, {}, {}

    target.on("/slow-ordered", slow)
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        sub = subscribe(platform, target.url("/slow-ordered"), mode="BLOCK_ON_ERROR")
        publish(platform, *[{"data": {"n": i}, "messageGroup": "g%d" % (i % 2)} for i in range(10)])
        wait_status(platform, sub["id"], ["COMPLETED"] * 10)
        for group in (0, 1):
            seen = [
                r.json()["n"]
                for r in target.received("/slow-ordered")
                if r.json()["n"] % 2 == group
            ]
            assert seen == sorted(seen)


def test_paused_connection_holds_its_jobs(tmp_path, database_url, target):
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        connection = httpx.post(
            platform.url("/api/connections"),
            json={"code": "erp", "name": "ERP", "serviceAccountId": "sa-1"},
        )
        assert connection.status_code == 201, connection.text
        connection_id = connection.json()["id"]
        sub = subscribe(platform, target.url("/ok"), connectionId=connection_id)
        paused = httpx.post(platform.url("/api/connections/%s/pause" % connection_id))
        assert paused.status_code == 200, paused.text
        publish(platform, {"data": {}})
        wait_status(platform, sub["id"], ["PENDING"])
        time.sleep(0.5)
        assert (
            target.received("/ok") == [] and jobs_of(platform, sub["id"])[0]["status"] == "PENDING"
        )
        assert (
            httpx.post(platform.url("/api/connections/%s/resume" % connection_id)).status_code
            == 200
        )
        wait_status(platform, sub["id"], ["COMPLETED"])


def test_deferral_uses_no_attempt_and_waits_the_asked_delay(tmp_path, database_url, target):
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        sub = subscribe(platform, target.url("/ackfalse"), maxRetries=1)
        publish(platform, {"data": {}})
        target.wait_for(1, "/ackfalse")
        (job,) = wait_status(platform, sub["id"], ["PENDING"])
        eventually(lambda: attempts_of(platform, job["id"]), what="the attempt")
        (job,) = jobs_of(platform, sub["id"])
        assert job["attempt_count"] == 0 and job["scheduled_for"] > job["last_attempt_at"]
        (attempt,) = attempts_of(platform, job["id"])
        assert attempt["status"] == "DEFERRED"


def test_subscription_delay_schedules_the_job(tmp_path, database_url, target):
    """delaySeconds: the job is due that long after its event, and not delivered before.
    (Checked on the rows, not by watching for PENDING: on a busy machine fan-out may run after
    the delay has passed.)"""
    from flowcatalyst.server.platform import clock

    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        sub = subscribe(platform, target.url("/ok"), delaySeconds=1)
        publish(platform, {"data": {}})
        target.wait_for(1, "/ok", timeout=10)
        (job,) = wait_status(platform, sub["id"], ["COMPLETED"])
        due = clock.to_epoch(job["scheduled_for"])
        assert due - clock.to_epoch(job["created_at"]) == pytest.approx(1.0, abs=1e-3)
        (attempt,) = attempts_of(platform, job["id"])
        assert clock.to_epoch(attempt["attempted_at"]) >= due


def test_dispatch_callback_refuses_bad_tokens_and_ignores_finished_jobs(
    tmp_path, database_url, target
):
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        sub = subscribe(platform, target.url("/ok"))
        publish(platform, {"data": {}})
        (job,) = wait_status(platform, sub["id"], ["COMPLETED"])
        url = platform.url("/api/dispatch/process")
        bad = httpx.post(
            url, json={"messageId": job["id"]}, headers={"Authorization": "Bearer " + "0" * 64}
        )
        assert (bad.status_code, bad.json()) == (401, {"ack": False, "message": "unauthorized"})
        assert httpx.post(url, content=b"nope").status_code == 400
        token = platform.app.platform.dispatch_auth.token(job["id"])
        again = httpx.post(
            url, json={"messageId": job["id"]}, headers={"Authorization": "Bearer " + token}
        )
        assert (again.status_code, again.json()["ack"]) == (200, True)
        assert len(target.received("/ok")) == 1  # a duplicate callback delivers nothing
        missing = httpx.post(
            url,
            json={"messageId": "0NOSUCHJOB000"},
            headers={
                "Authorization": "Bearer "
                + platform.app.platform.dispatch_auth.token("0NOSUCHJOB000")
            },
        )
        assert missing.json() == {"ack": True, "message": "job not found"}


def test_stale_queued_and_stuck_processing_jobs_are_recovered(tmp_path, database_url):
    with PlatformRunner(
        tmp_path, database_url, router_enabled=False, scheduler_enabled=False
    ) as platform:
        from flowcatalyst.server.platform import clock, jobs
        from flowcatalyst.server.platform.scheduler import _recover

        old = clock.after(-3600)
        stale = jobs.new_job("a:b:c:d", "http://127.0.0.1:9/", status="QUEUED")
        stuck = jobs.new_job(
            "a:b:c:d", "http://127.0.0.1:9/", status="PROCESSING", timeout_seconds=5
        )
        fresh = jobs.new_job("a:b:c:d", "http://127.0.0.1:9/", status="QUEUED")

        async def setup(tx):
            await jobs.insert_jobs(tx, [stale, stuck, fresh])
            await tx.execute(
                "UPDATE msg_dispatch_jobs SET queued_at = ? WHERE id = ?", (old, stale["id"])
            )
            await tx.execute(
                "UPDATE msg_dispatch_jobs SET queued_at = ? WHERE id = ?",
                (clock.now(), fresh["id"]),
            )
            await tx.execute(
                "UPDATE msg_dispatch_jobs SET last_attempt_at = ? WHERE id = ?", (old, stuck["id"])
            )

        platform.write(setup)
        assert platform.write(_recover, clock.after(-300), 60) == (1, 1)
        statuses = {
            r["id"]: r["status"] for r in platform.query("SELECT id, status FROM msg_dispatch_jobs")
        }
        assert statuses == {stale["id"]: "PENDING", stuck["id"]: "PENDING", fresh["id"]: "QUEUED"}


def test_batch_results_per_item(tmp_path, database_url):
    with PlatformRunner(
        tmp_path, database_url, router_enabled=False, scheduler_enabled=False
    ) as platform:
        answer = httpx.post(
            platform.url("/api/events/batch"),
            json={
                "items": [
                    {"type": "shop:orders:order:created", "source": "s", "data": {"a": 1}},
                    {"type": "not-a-code", "source": "s"},
                    {"source": "s"},
                    {
                        "event_type": "shop:orders:order:paid",
                        "data": '{"as": "string"}',
                        "deduplication_id": "d-1",
                    },
                    {"type": "shop:orders:order:paid", "deduplicationId": "d-1"},
                ]
            },
        )
        assert answer.status_code == 200
        results = answer.json()["results"]
        assert [r["status"] for r in results] == [
            "SUCCESS",
            "BAD_REQUEST",
            "BAD_REQUEST",
            "SUCCESS",
            "SUCCESS",
        ]
        assert results[1]["field"] == "items[1].type" and "4" in results[1]["error"]
        assert results[2]["field"] == "items[2].type" and "required" in results[2]["error"]
        assert results[4] == {"id": results[3]["id"], "status": "SUCCESS", "duplicate": True}
        stored = platform.query("SELECT id, data FROM msg_events ORDER BY id")
        assert len(stored) == 2
        event = httpx.get(platform.url("/api/events/%s" % results[3]["id"])).json()
        assert event["data"] == {"as": "string"}  # a JSON string is delivered as what it holds

        jobs = httpx.post(
            platform.url("/api/dispatch-jobs/batch"),
            json={
                "items": [
                    {"code": "a:b:c:d", "targetUrl": "http://127.0.0.1:9/x", "payload": "{}"},
                    {"code": "a:b:c:d", "targetUrl": "ftp://nope"},
                    {"code": "a:b:c:d", "targetUrl": "http://127.0.0.1:9/x", "mode": "SIDEWAYS"},
                    {"code": "a:b:c:d", "targetUrl": "http://127.0.0.1:9/x", "idempotencyKey": "k"},
                    {
                        "code": "a:b:c:d",
                        "target_url": "http://127.0.0.1:9/x",
                        "idempotency_key": "k",
                    },
                ]
            },
        )
        assert jobs.status_code == 200
        results = jobs.json()["results"]
        assert [r["status"] for r in results] == [
            "SUCCESS",
            "BAD_REQUEST",
            "BAD_REQUEST",
            "SUCCESS",
            "SUCCESS",
        ]
        assert (
            results[1]["field"] == "items[1].targetUrl" and results[2]["field"] == "items[2].mode"
        )
        assert results[4]["id"] == results[3]["id"] and results[4]["duplicate"] is True
        assert platform.query("SELECT COUNT(*) AS n FROM msg_dispatch_jobs")[0]["n"] == 2
        too_many = httpx.post(platform.url("/api/events/batch"), json={"items": [{}] * 1001})
        assert too_many.status_code == 400 and too_many.json()["error"] == "VALIDATION_ERROR"


def test_two_stream_processors_make_each_job_exactly_once(tmp_path, postgres_url):
    only_stream = {"router_enabled": False, "scheduler_enabled": False, "fan_out_batch_size": 20}
    for name in "ab":
        (tmp_path / name).mkdir()
    with (
        PlatformRunner(tmp_path / "a", postgres_url, name="a", **only_stream) as a,
        PlatformRunner(tmp_path / "b", postgres_url, name="b", **only_stream) as b,
    ):
        subs = [subscribe(a, "http://127.0.0.1:9/x") for _ in range(3)]
        for chunk in range(10):
            publish(b, *[{"data": {"n": chunk * 100 + i}} for i in range(100)])
        eventually(
            lambda: (
                a.query("SELECT COUNT(*) AS n FROM msg_events WHERE fanned_out_at IS NULL")[0]["n"]
                == 0
            ),
            timeout=30,
            what="every event fanned out",
        )
        rows = a.query(
            "SELECT subscription_id, COUNT(*) AS n, COUNT(DISTINCT event_id) AS events FROM msg_dispatch_jobs GROUP BY subscription_id"
        )
        assert sorted((r["subscription_id"], r["n"], r["events"]) for r in rows) == sorted(
            (s["id"], 1000, 1000) for s in subs
        )
        workers = [r.app.stream.fan_out.jobs_created for r in (a, b)]
        assert sum(workers) == 3000, workers  # whoever did the work, nothing twice


def test_jobs_run_in_their_dispatch_pool_and_a_suspended_pool_holds_them(
    tmp_path, database_url, target
):
    with PlatformRunner(tmp_path, database_url, **FAST) as platform:
        pool = httpx.post(
            platform.url("/api/dispatch-pools"),
            json={"code": "bulk", "name": "Bulk", "concurrency": 2},
        )
        assert pool.status_code == 201, pool.text
        pool_id = pool.json()["id"]
        sub = subscribe(platform, target.url("/ok"), dispatchPoolId=pool_id)
        publish(platform, {"data": {}})
        wait_status(platform, sub["id"], ["COMPLETED"])
        stats = httpx.get(platform.url("/monitoring/pool-stats")).json()
        assert stats["bulk"]["totalSucceeded"] == 1  # the pointer named the pool by its code

        assert (
            httpx.post(platform.url("/api/dispatch-pools/%s/suspend" % pool_id)).status_code == 200
        )
        publish(platform, {"data": {}})
        wait_status(platform, sub["id"], ["COMPLETED", "PENDING"])
        time.sleep(0.5)
        assert len(target.received("/ok")) == 1
        assert (
            httpx.post(platform.url("/api/dispatch-pools/%s/activate" % pool_id)).status_code == 200
        )
        wait_status(platform, sub["id"], ["COMPLETED", "COMPLETED"])


def test_a_refused_publish_puts_the_jobs_back_to_pending(tmp_path):
    """The scheduler flips jobs QUEUED before it publishes; when the queue cannot be reached,
    they go back to PENDING (not left QUEUED for stale recovery minutes later)."""
    from flowcatalyst.server.platform import jobs
    from tests.support.ports import free_port

    queue = "nats://127.0.0.1:%d?stream=FCDOWN&consumer=router&subject=fcdown.>" % free_port()
    with PlatformRunner(
        tmp_path, None, router_enabled=False, dispatch_queue=queue, **FAST
    ) as platform:
        job = jobs.new_job("a:b:c:d", "http://127.0.0.1:9/hook")

        async def insert(tx):
            await jobs.insert_jobs(tx, [job])

        platform.write(insert)
        scheduler = platform.app.scheduler.loops[0]
        eventually(lambda: scheduler.errors >= 1, timeout=30, what="a failed publish")
        (row,) = platform.query("SELECT status FROM msg_dispatch_jobs")
        assert row["status"] == "PENDING"
