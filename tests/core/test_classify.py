import pytest

from flowcatalyst.core import (
    classify_response,
    classify_transport_error,
    parse_retry_after,
    retry_delay,
)
from flowcatalyst.core.classify import (
    BREAKER_RECORD,
    CIRCUIT_OPEN,
    DEFERRED,
    ERROR_CONFIG,
    ERROR_CONNECTION,
    ERROR_PROCESS,
    RATE_LIMITED,
    SUCCESS,
    circuit_open_outcome,
)
from flowcatalyst.core.timefmt import epoch_from_utc

NOW = epoch_from_utc(2026, 1, 1, 12, 0, 0)


@pytest.mark.parametrize(
    "status, headers, body, result, delay, text, warning",
    [
        (200, {}, b"", SUCCESS, None, None, None),
        (204, {}, b"", SUCCESS, None, None, None),
        (200, {}, b'{"ack": true}', SUCCESS, None, None, None),
        (200, {}, b"not json", SUCCESS, None, None, None),
        (200, {}, b'{"ack": "false"}', SUCCESS, None, None, None),
        (200, {}, b"[false]", SUCCESS, None, None, None),
        (201, {}, b'  {"ack": false}', DEFERRED, None, "ack=false", None),
        (200, {}, b'{"ack": false, "delaySeconds": 7}', DEFERRED, 7, "ack=false", None),
        (200, {}, b'{"ack": false, "delaySeconds": -3}', DEFERRED, None, "ack=false", None),
        (400, {}, b"", ERROR_CONFIG, None, "HTTP 400: Bad request", "ERROR"),
        (401, {}, b"", ERROR_CONFIG, None, "HTTP 401: Auth error", "ERROR"),
        (403, {}, b"", ERROR_CONFIG, None, "HTTP 403: Auth error", "ERROR"),
        (404, {}, b"", ERROR_CONFIG, None, "HTTP 404: Not found", "ERROR"),
        (422, {}, b"", ERROR_CONFIG, None, "HTTP 422: Client error", None),
        (501, {}, b"", ERROR_CONFIG, None, "HTTP 501: Not implemented", "CRITICAL"),
        (429, {}, b"", RATE_LIMITED, 30, "HTTP 429", None),
        (429, {"retry-after": "12"}, b"", RATE_LIMITED, 12, "HTTP 429", None),
        (500, {}, b"", ERROR_PROCESS, 30, "HTTP 500: Server error", None),
        (502, {}, b"", ERROR_PROCESS, 30, "HTTP 502: Server error", None),
        (503, {"retry-after": "5"}, b"", ERROR_PROCESS, 30, "HTTP 503: Server error", None),
        (504, {}, b"", ERROR_PROCESS, 30, "HTTP 504: Server error", None),
        (302, {}, b"", ERROR_PROCESS, 30, "HTTP 302: Unexpected status", None),
        (100, {}, b"", ERROR_PROCESS, 30, "HTTP 100: Unexpected status", None),
    ],
)
def test_classification_table(status, headers, body, result, delay, text, warning):
    o = classify_response(status, headers, body, NOW)
    assert o.result == result
    assert o.delay == delay
    if text:
        assert text in o.message
    assert o.warning == warning
    assert o.acked == (result in (SUCCESS, ERROR_CONFIG))


@pytest.mark.parametrize(
    "kind, text",
    [("timeout", "Request timeout"), ("connect", "Connection error: refused"), ("other", "Request failed: refused")],
)
def test_transport_errors_are_connection_errors(kind, text):
    o = classify_transport_error(kind, "refused")
    assert o.result == ERROR_CONNECTION and o.delay == 30 and o.message == text


def test_nack_delays_follow_the_spec():
    assert classify_response(500, {}, b"", NOW).nack_delay == 30
    assert classify_response(200, {}, b'{"ack":false}', NOW).nack_delay == 30
    assert circuit_open_outcome("http://x").nack_delay == 5
    assert circuit_open_outcome("http://x").result == CIRCUIT_OPEN


def test_breaker_records():
    assert BREAKER_RECORD[SUCCESS] is True and BREAKER_RECORD[ERROR_CONFIG] is True
    assert BREAKER_RECORD[ERROR_PROCESS] is False and BREAKER_RECORD[ERROR_CONNECTION] is False
    assert BREAKER_RECORD[RATE_LIMITED] is None and BREAKER_RECORD[DEFERRED] is None


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("", None),
        ("0", 0),
        ("120", 120),
        ("999999", 43200),
        ("soon", None),
        ("-5", None),
        ("Thu, 01 Jan 2026 12:00:45 GMT", 45),
        ("Thursday, 01-Jan-26 12:01:00 GMT", 60),
        ("Thu Jan  1 12:00:10 2026", 10),
        ("Wed, 31 Dec 2025 23:00:00 GMT", 0),
    ],
)
def test_retry_after_seconds_and_http_dates(value, expected):
    assert parse_retry_after(value, NOW) == expected


def test_http_date_retry_after_in_a_429():
    o = classify_response(429, {"retry-after": "Thu, 01 Jan 2026 12:02:00 GMT"}, b"", NOW)
    assert o.delay == 120


def test_retry_delay_counts_attempts():
    fail = classify_response(500, {}, b"", NOW)
    delays = (1.0, 2.0)
    assert retry_delay(fail, 1, 3, delays) == 1.0
    assert retry_delay(fail, 2, 3, delays) == 2.0
    assert retry_delay(fail, 3, 3, delays) is None  # three attempts in total
    assert retry_delay(fail, 3, 5, delays) == 2.0  # the last delay repeats
    assert retry_delay(classify_transport_error("timeout", ""), 1, 3, delays) == 1.0
    for o in (
        classify_response(200, {}, b"", NOW),
        classify_response(404, {}, b"", NOW),
        classify_response(429, {}, b"", NOW),
        classify_response(200, {}, b'{"ack":false}', NOW),
    ):
        assert retry_delay(o, 1, 3, delays) is None
    assert retry_delay(fail, 1, 1, delays) is None
