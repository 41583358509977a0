import base64
import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from flowcatalyst.core import sign, sign_standard, verify, verify_standard
from flowcatalyst.core.signing import (
    constant_time_equals,
    flowcatalyst_signature,
    hmac_sha256,
    standard_signature,
)
from flowcatalyst.core.timefmt import iso_utc_ms, parse_iso_utc

SECRET = "test-secret-do-not-use-in-prod"
BODY = b'{"messageId":"msg_TEST123456"}'


def test_spec_vector():
    assert (
        flowcatalyst_signature(SECRET, "2026-01-01T00:00:00.000Z", BODY)
        == "4c53b4f3224c8c870cd4f12e03a6903233153f26777708dd3afab915b2eb3819"
    )


def test_sign_produces_the_spec_headers():
    now = parse_iso_utc("2026-01-01T00:00:00.000Z")
    headers = sign(SECRET, BODY, now)
    assert headers == {
        "X-FLOWCATALYST-SIGNATURE": "4c53b4f3224c8c870cd4f12e03a6903233153f26777708dd3afab915b2eb3819",
        "X-FLOWCATALYST-TIMESTAMP": "2026-01-01T00:00:00.000Z",
    }


def test_timestamp_format_has_three_fraction_digits():
    assert iso_utc_ms(1778687328.3314) == "2026-05-13T15:48:48.331Z"


def test_verify_accepts_fresh_and_rejects_everything_else():
    now = 1_800_000_000.0
    h = sign(SECRET, BODY, now)
    sig, ts = h["X-FLOWCATALYST-SIGNATURE"], h["X-FLOWCATALYST-TIMESTAMP"]
    assert verify(SECRET, BODY, sig, ts, now=now + 10)
    assert verify(SECRET, BODY, sig.upper(), ts, now=now)
    assert not verify(SECRET, BODY + b" ", sig, ts, now=now)
    assert not verify("other", BODY, sig, ts, now=now)
    assert not verify(SECRET, BODY, sig, ts, now=now + 301)  # stale
    assert not verify(SECRET, BODY, sig, ts, now=now - 301)  # from the future
    assert not verify(SECRET, BODY, sig, "yesterday", now=now)
    assert not verify(SECRET, BODY, "", ts, now=now)
    assert verify(SECRET, BODY, sig, ts, now=now + 3000, tolerance=3600)


def test_standard_webhooks_reference_vector():
    # The vector published by the Standard Webhooks project.
    assert (
        standard_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_standard_webhooks_sign_and_verify():
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef").decode()
    h = sign_standard(secret, "msg_1", BODY, now=1_700_000_000)
    assert h["webhook-id"] == "msg_1" and h["webhook-timestamp"] == "1700000000"
    ok = verify_standard(secret, "msg_1", h["webhook-timestamp"], h["webhook-signature"], BODY, now=1_700_000_060)
    assert ok
    several = "v1,AAAA " + h["webhook-signature"]
    assert verify_standard(secret, "msg_1", h["webhook-timestamp"], several, BODY, now=1_700_000_000)
    assert not verify_standard(secret, "msg_2", h["webhook-timestamp"], h["webhook-signature"], BODY, now=1_700_000_000)
    assert not verify_standard(secret, "msg_1", h["webhook-timestamp"], h["webhook-signature"], BODY, now=1_700_000_400)
    assert not verify_standard(secret, "msg_1", "abc", h["webhook-signature"], BODY, now=1_700_000_000)


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_matches_the_standard_library(key, msg):
    assert hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_constant_time_equals():
    assert constant_time_equals("abc", b"abc")
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("abc", "abcd")
