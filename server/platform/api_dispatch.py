"""`POST /api/dispatch/process`: the router's callback for each message pointer the scheduler
queued (spec/platform.md §3.9, GO's algorithm, with the fixes of §10).

1. `{"messageId": jobId}`; anything else: 400 `{ack: true}` (a pointer that can never work).
2. `Authorization: Bearer hex(HMAC(key, jobId))` (dispatchauth.py) or 401 `{ack: false}`.
3. QUEUED -> PROCESSING in one conditional UPDATE: of two callbacks for one job (a duplicate
   pointer), one delivers; the other, and a callback for a missing, finished, cancelled or
   re-pending job, answers `{ack: true}` and does nothing.
4. Deliver (delivery.py) with the job's timeout, outside any transaction.
5. Record the attempt and move the job (SUCCEED / DEFER / RETRY / FAIL) in one transaction,
   then wake the scheduler: the next job of the group is free now.
6. `{ack: true}` — the platform owns retries (`scheduled_for`), not the queue. A store error
   answers 503 `{ack: false}` so the router retries the pointer later.
"""

import time

from flowcatalyst.core import jsoncodec
from flowcatalyst.core.httpclient import TransportError
from flowcatalyst.core.log import logger

from . import clock, delivery, ids, jobs, jobstate
from .routes import DISPATCH, Reply, platform_route
from .store import StoreError

_log = logger("dispatch")

SCHEMAS = {
    "DispatchProcess": {
        "type": "object",
        "required": ["messageId"],
        "properties": {"messageId": {"type": "string", "description": "the dispatch job id"}},
    },
    "DispatchAck": {
        "type": "object",
        "properties": {"ack": {"type": "boolean"}, "message": {"type": "string"}},
    },
}

ATTEMPT_COLUMNS = (
    "id", "dispatch_job_id", "attempt_number", "status", "response_code", "response_body",
    "error_message", "error_type", "duration_millis", "attempted_at", "completed_at", "created_at",
)  # fmt: skip


def ack(status=200, message=None, acked=True):
    body = {"ack": acked}
    if message:
        body["message"] = message
    return Reply(status, body)


def message_id(req):
    try:
        data = jsoncodec.loads(req.body or b"")
    except (ValueError, UnicodeError):
        return None
    value = data.get("messageId") if isinstance(data, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


async def _start(tx, job_id, now):
    """QUEUED -> PROCESSING; the job and its subscription's signing settings, or None when
    this callback does not get to deliver it (with the job's status, for the answer)."""
    if not await jobs.move(tx, [job_id], "START", {"last_attempt_at": now}):
        row = await tx.fetchone("SELECT status FROM msg_dispatch_jobs WHERE id = ?", (job_id,))
        return None, row["status"] if row else None
    job = await tx.fetchone("SELECT * FROM msg_dispatch_jobs WHERE id = ?", (job_id,))
    subscription = None
    if job["subscription_id"]:
        subscription = await tx.fetchone(
            "SELECT signing_secret, standard_webhooks FROM msg_subscriptions WHERE id = ?",
            (job["subscription_id"],),
        )
    return (job, subscription), jobstate.PROCESSING


async def _finish(tx, job, attempt_number, result, started_at, duration_ms, retry_schedule):
    now = clock.now()
    await tx.insert(
        "msg_dispatch_job_attempts",
        ATTEMPT_COLUMNS,
        [
            (
                ids.tsid(), job["id"], attempt_number, result.status, result.response_code,
                result.response_body, result.error, result.error_type, duration_ms, started_at,
                now, now,
            )
        ],
    )  # fmt: skip
    sets = {"last_attempt_at": started_at, "duration_millis": duration_ms}
    if result.event == "SUCCEED":
        sets.update(attempt_count=attempt_number, completed_at=now, last_error=None)
    elif result.event == "DEFER":  # the subscriber asked for later: no attempt used
        sets.update(scheduled_for=clock.after(result.delay), last_error=result.error)
    else:
        sets.update(attempt_count=attempt_number, last_error=result.error)
        if result.event == "RETRY":
            sets["scheduled_for"] = clock.after(jobstate.backoff(attempt_number, retry_schedule))
        else:
            sets["completed_at"] = now
    await jobs.move(tx, [job["id"]], result.event, sets)


async def deliver(platform, job, subscription, attempt_number):
    """POST the job to its target; a delivery.Result."""
    body, content_type = delivery.request_body(job, attempt_number)
    headers = delivery.request_headers(job, body, content_type, attempt_number, subscription)
    try:
        response = await platform.delivery.send(
            "POST", job["target_url"], headers, body, timeout=job["timeout_seconds"]
        )
    except TransportError as e:
        return delivery.failure(
            delivery.transport_error_type(e.kind), str(e), attempt_number, job["max_retries"]
        )
    return delivery.from_response(
        response.status,
        response.headers,
        response.body,
        attempt_number,
        job["max_retries"],
        time.time(),
    )


def register(api, platform):
    store = platform.store
    schedule = platform.settings.retry_schedule
    outcomes = platform.metrics.counter(
        "fc_platform_dispatch_attempts_total",
        "Deliveries the dispatch callback made, by outcome",
        ("outcome",),
    )

    @platform_route(
        api,
        "POST",
        "/api/dispatch/process",
        summary="The router's callback: deliver one dispatch job",
        tag="Dispatch",
        auth=DISPATCH,
        body="DispatchProcess",
        responses={200: "DispatchAck", 400: "DispatchAck", 401: "DispatchAck", 503: "DispatchAck"},
        description="Authenticated with `Authorization: Bearer <hex HMAC-SHA256 of the job id>` "
        "(the token the scheduler put in the message pointer).",
    )
    async def process(req, principal):
        job_id = message_id(req)
        if job_id is None:
            return ack(400, 'invalid messageId: the body must be {"messageId": "<job id>"}')
        token = (req.headers.get("Authorization") or "").partition(" ")[2]
        if platform.dispatch_auth is None or not platform.dispatch_auth.verify(job_id, token):
            return ack(401, "unauthorized", acked=False)
        started_at = clock.now()
        try:
            claimed, status = await store.write(_start, job_id, started_at)
        except StoreError as e:
            return ack(503, "store unavailable: %s" % e, acked=False)
        if claimed is None:
            return ack(message="job not found" if status is None else "job is %s" % status)
        job, subscription = claimed
        attempt_number = job["attempt_count"] + 1
        began = time.monotonic()
        result = await deliver(platform, job, subscription, attempt_number)
        duration_ms = int((time.monotonic() - began) * 1000)
        outcomes.inc((result.event,))
        try:
            await store.write(
                _finish, job, attempt_number, result, started_at, duration_ms, schedule
            )
        except StoreError as e:
            # the job stays PROCESSING; stuck recovery returns it to PENDING
            _log.error("could not record a delivery", job=job_id, error=str(e))
            return ack(503, "store unavailable: %s" % e, acked=False)
        platform.signals.wake("scheduler")
        platform.signals.wake("jobs-projection")
        return ack()
