"""What a platform answer means for each outbox row of a batch (spec/platform.md §5.2 step 5-6),
as pure functions: the processor does the IO.

A transport failure, a timeout, or 502/503/504 means the platform is unavailable: the
processor puts the rows back untouched (processor.py), so those are not items' results here.
A 2xx answer carries
`{"results": [{id, status, error?}]}`, matched to the items by position; a body that is not
that, or has the wrong number of results, fails every item with INTERNAL_ERROR (we cannot
know which were stored). Any other status fails every item by the HTTP mapping below.

Each item's status then decides its row: SUCCESS and SKIPPED -> delete; a retryable status
(INTERNAL_ERROR, UNAUTHORIZED, GATEWAY_ERROR) with attempts left -> PENDING again with
`retry_count + 1`; anything else, or no attempts left -> kept with its status code and the
error, for an operator (and, with block-on-error, holding its message group).
"""

import json

from . import schema

PATHS = {
    schema.EVENT: "/api/events/batch",
    schema.DISPATCH_JOB: "/api/dispatch-jobs/batch",
    schema.AUDIT_LOG: "/api/audit-logs/batch",
}

HTTP_STATUSES = {
    400: schema.BAD_REQUEST,
    401: schema.UNAUTHORIZED,
    403: schema.FORBIDDEN,
}
UNAVAILABLE = (502, 503, 504)  # the platform (or its gateway) is down: no item's fault

DELETE = "DELETE"  # the row was forwarded
RETRY = "RETRY"  # back to PENDING, retry_count + 1
FAIL = "FAIL"  # kept with its status code


class ItemResult:
    __slots__ = ("status", "error")

    def __init__(self, status, error=None):
        self.status = status  # SUCCESS (also for SKIPPED) or a failure code of schema
        self.error = error

    def __repr__(self):
        return "ItemResult(%s, %r)" % (schema.STATUS_NAMES.get(self.status), self.error)


def all_items(count, status, error):
    return [ItemResult(status, error) for _ in range(count)]


def from_response(count, status, body):
    """One ItemResult per item of a batch of `count` from the platform's answer."""
    if not 200 <= status < 300:
        code = HTTP_STATUSES.get(status, schema.INTERNAL_ERROR)
        return all_items(count, code, "HTTP %d: %s" % (status, _snippet(body)))
    try:
        results = json.loads(body)["results"]
        if not isinstance(results, list):
            raise TypeError("results is not a list")
    except (ValueError, KeyError, TypeError) as e:
        return all_items(
            count, schema.INTERNAL_ERROR, "unreadable answer (%s): %s" % (e, _snippet(body))
        )
    if len(results) != count:
        return all_items(
            count,
            schema.INTERNAL_ERROR,
            "the platform answered %d results for %d items" % (len(results), count),
        )
    return [_item(r) for r in results]


def _item(result):
    if not isinstance(result, dict):
        return ItemResult(schema.INTERNAL_ERROR, "unreadable result %r" % (result,))
    name = str(result.get("status", "")).upper()
    if name in ("SUCCESS", "SKIPPED"):
        return ItemResult(schema.SUCCESS)
    code = schema.STATUS_CODES.get(name)
    if code is None or code in (schema.PENDING, schema.IN_PROGRESS):
        code = schema.INTERNAL_ERROR  # an unknown status is retried, never taken as success
    error = result.get("error") or name
    field = result.get("field")
    return ItemResult(code, "%s (%s)" % (error, field) if field and field not in error else error)


def decide(item, retry_count, max_retries):
    """(DELETE | RETRY | FAIL) for a row with `retry_count` earlier failures."""
    if item.status == schema.SUCCESS:
        return DELETE
    if item.status in schema.RETRYABLE and retry_count + 1 < max_retries:
        return RETRY
    return FAIL


def _snippet(body):
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return text[:300]
