"""Pure rules under MicroPython: signing vectors, classification table, breaker, limiter."""

from mpcheck import check, equal, finish

from flowcatalyst.core import (
    BreakerSettings,
    CircuitBreaker,
    MessageError,
    TokenBucket,
    classify_response,
    parse_message,
    parse_retry_after,
    sign,
    verify,
    verify_standard,
)
from flowcatalyst.core.signing import flowcatalyst_signature, standard_signature
from flowcatalyst.core.timefmt import epoch_from_utc, iso_utc_ms

equal(
    flowcatalyst_signature("test-secret-do-not-use-in-prod", "2026-01-01T00:00:00.000Z", b'{"messageId":"msg_TEST123456"}'),
    "4c53b4f3224c8c870cd4f12e03a6903233153f26777708dd3afab915b2eb3819",
    "FlowCatalyst signature vector",
)
equal(
    standard_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'),
    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    "Standard Webhooks vector",
)
now = epoch_from_utc(2026, 1, 1)
h = sign("s3cr3t", b"{}", now)
equal(h["X-FLOWCATALYST-TIMESTAMP"], "2026-01-01T00:00:00.000Z", "timestamp format")
check(verify("s3cr3t", b"{}", h["X-FLOWCATALYST-SIGNATURE"], h["X-FLOWCATALYST-TIMESTAMP"], now=now + 5), "verify fresh")
check(not verify("s3cr3t", b"{}", h["X-FLOWCATALYST-SIGNATURE"], h["X-FLOWCATALYST-TIMESTAMP"], now=now + 301), "reject stale")
check(not verify_standard("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", "1", "v1,x", b"", now=1), "reject bad standard signature")
equal(iso_utc_ms(0.5), "1970-01-01T00:00:00.500Z", "iso format")

rows = [
    (200, b"", "SUCCESS"),
    (200, b'{"ack":true}', "SUCCESS"),
    (200, b'{"ack":false,"delaySeconds":9}', "DEFERRED"),
    (400, b"", "ERROR_CONFIG"),
    (404, b"", "ERROR_CONFIG"),
    (429, b"", "RATE_LIMITED"),
    (500, b"", "ERROR_PROCESS"),
    (501, b"", "ERROR_CONFIG"),
]
for status, body, result in rows:
    equal(classify_response(status, {}, body, now).result, result, "classify %d %s" % (status, body))
equal(classify_response(200, {}, b'{"ack":false,"delaySeconds":9}', now).delay, 9, "ack:false delay")
equal(parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now), 60, "Retry-After HTTP-date")
equal(parse_retry_after("15", now), 15, "Retry-After seconds")

b = CircuitBreaker("t", BreakerSettings(min_calls=4, reset_timeout=5))
for _ in range(4):
    b.record_failure(10.0)
equal(b.state, "OPEN", "breaker opens")
check(not b.allow_request(12.0), "open breaker rejects")
check(b.allow_request(15.0) and b.state == "HALF_OPEN", "half-open after timeout")
for _ in range(3):
    b.record_success(16.0)
equal(b.state, "CLOSED", "breaker closes after probes")

tb = TokenBucket(60, 0.0)
check(all(tb.try_acquire(0.0) for _ in range(60)) and not tb.try_acquire(0.0), "bucket burst = rpm")
check(tb.try_acquire(1.0), "refill rpm/60 per second")

try:
    parse_message({"id": "x", "mediationType": "HTTP", "mediationTarget": 5})
    check(False, "malformed pointer raises")
except MessageError as e:
    equal(e.field, "mediationTarget", "malformed pointer names the field")
finish()
