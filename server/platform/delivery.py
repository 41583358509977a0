"""What the dispatch callback sends to a subscriber and what it makes of the answer
(spec/platform.md §3.9 steps 5-6, §8). Pure functions; api_dispatch.py does the IO.

The request: the stored payload as it is (`dataOnly`) or the envelope `{id, type, source,
subject, data, correlationId, messageGroup, clientId, attemptNumber}` (nulls left out, as
GO), with the documented header set of §8.1 — `X-FlowCatalyst-Event-Id`, `-Dispatch-Job-Id`,
`-Subscription-Id`, `-Client-Id`, `-Correlation-Id`, `-Attempt`, and the legacy
`X-Dispatch-Job-Id` / `X-Event-Type` — signed with the subscription's secret
(`X-FLOWCATALYST-SIGNATURE` over timestamp + body) and, when the subscription asks for it,
Standard Webhooks headers with the job id as `webhook-id` (stable across retries, the key a
receiver deduplicates on).

The answer, as the platform's own rules (not the router's): 2xx -> SUCCEED; 2xx with
`{"ack": false}` or 429 -> DEFER (the asked delay, else 30 s; no attempt used); anything
else, 3xx and 4xx included, or no answer -> a failure that RETRYs on the schedule until
`max_retries` deliveries were made, then FAILs.
"""

from flowcatalyst.core import jsoncodec, signing
from flowcatalyst.core.classify import DEFERRED, RATE_LIMITED, SUCCESS, classify_response

from . import jobstate

MAX_RESPONSE_BODY = 65536  # bytes of a subscriber's answer kept with the attempt

# error_type of an attempt (spec §1.8)
CONNECTION = "CONNECTION"
TIMEOUT = "TIMEOUT"
HTTP_ERROR = "HTTP_ERROR"


def request_body(job, attempt_number):
    """The bytes to POST, and their content type."""
    payload = job["payload"]
    if job["data_only"]:
        return (payload or "{}").encode(), job["payload_content_type"] or "application/json"
    try:
        data = jsoncodec.loads(payload) if payload is not None else None
    except ValueError:
        data = payload  # not JSON: sent as the string it is
    envelope = {
        "id": job["id"],
        "type": job["code"],
        "source": job["source"],
        "subject": job["subject"],
        "data": data,
        "eventId": job["event_id"],
        "correlationId": job["correlation_id"],
        "messageGroup": job["message_group"],
        "clientId": job["client_id"],
        "attemptNumber": attempt_number,
    }
    body = {k: v for k, v in envelope.items() if v is not None}
    return jsoncodec.dumps(body).encode(), "application/json"


def request_headers(job, body, content_type, attempt_number, subscription=None, now=None):
    headers = {
        "Content-Type": content_type,
        "X-Dispatch-Job-Id": job["id"],
        "X-Event-Type": job["code"],
        "X-FlowCatalyst-Dispatch-Job-Id": job["id"],
        "X-FlowCatalyst-Event-Type": job["code"],
        "X-FlowCatalyst-Attempt": str(attempt_number),
    }
    for header, column in (
        ("X-FlowCatalyst-Event-Id", "event_id"),
        ("X-FlowCatalyst-Subscription-Id", "subscription_id"),
        ("X-FlowCatalyst-Client-Id", "client_id"),
        ("X-FlowCatalyst-Correlation-Id", "correlation_id"),
    ):
        if job[column]:
            headers[header] = job[column]
    secret = subscription and subscription["signing_secret"]
    if secret:
        headers.update(signing.sign(secret, body, now))
        if subscription["standard_webhooks"]:
            headers.update(signing.sign_standard(secret, job["id"], body, now))
    return headers


class Result:
    """How one delivery went: the job event (SUCCEED, DEFER, RETRY or FAIL), the attempt's
    status (SUCCESS, DEFERRED, FAILED) and what to record."""

    def __init__(self, event, status, response_code=None, error_type=None, error=None, delay=None):
        self.event = event
        self.status = status
        self.response_code = response_code
        self.error_type = error_type
        self.error = error
        self.delay = delay
        self.response_body = None


def from_response(status, headers, body, attempt_number, max_retries, now=None):
    outcome = classify_response(status, headers, body, now)
    if outcome.result == SUCCESS:
        result = Result("SUCCEED", "SUCCESS", status)
    elif outcome.result in (DEFERRED, RATE_LIMITED):
        result = Result(
            "DEFER", "DEFERRED", status, delay=outcome.nack_delay, error=outcome.message
        )
    else:
        result = failure(HTTP_ERROR, "HTTP %d" % status, attempt_number, max_retries)
        result.response_code = status
    result.response_body = body[:MAX_RESPONSE_BODY].decode("utf-8", "replace") if body else None
    return result


def failure(error_type, error, attempt_number, max_retries):
    return Result(
        jobstate.after_failure(attempt_number, max_retries), "FAILED", None, error_type, error
    )


def transport_error_type(kind):
    return TIMEOUT if kind == "timeout" else CONNECTION
