"""Webhook signatures, for the router (sign) and for receivers (verify).

Two schemes:
- FlowCatalyst (router spec §4.2): `X-FLOWCATALYST-TIMESTAMP` is the UTC time as
  `2026-05-13T15:42:08.331Z`, `X-FLOWCATALYST-SIGNATURE` the lower-case hex HMAC-SHA256 of
  timestamp + body, keyed by the UTF-8 secret.
- Standard Webhooks (standardwebhooks.com), chosen when the secret starts with `whsec_`:
  `webhook-id`, `webhook-timestamp` (unix seconds) and `webhook-signature: v1,<base64>` over
  `id.timestamp.body`, keyed by the base64-decoded part of the secret.

HMAC is written here over `hashlib.sha256` because MicroPython has no `hmac` module.
"""

import binascii
import hashlib

from .compat import wall_time
from .timefmt import iso_utc_ms, parse_iso_utc

SIGNATURE_HEADER = "X-FLOWCATALYST-SIGNATURE"
TIMESTAMP_HEADER = "X-FLOWCATALYST-TIMESTAMP"
STANDARD_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300  # seconds a signature stays fresh, either side of now

_BLOCK = 64
_IPAD = bytes((x ^ 0x36) for x in range(256))
_OPAD = bytes((x ^ 0x5C) for x in range(256))


def hmac_sha256(key, msg):
    """RFC 2104 HMAC-SHA256 of bytes `msg` under bytes `key`; returns the 32-byte digest."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (_BLOCK - len(key))
    inner = hashlib.sha256(bytes(_IPAD[b] for b in key))
    inner.update(msg)
    outer = hashlib.sha256(bytes(_OPAD[b] for b in key))
    outer.update(inner.digest())
    return outer.digest()


def constant_time_equals(a, b):
    """Compare two strings or byte strings without an early exit on the first difference."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def _bytes(value):
    return value.encode() if isinstance(value, str) else bytes(value)


# -- FlowCatalyst scheme ------------------------------------------------------------------------


def flowcatalyst_signature(secret, timestamp, body):
    return hmac_sha256(_bytes(secret), _bytes(timestamp) + _bytes(body)).hex()


def sign(secret, body, now=None):
    """Headers that sign `body` (bytes) for delivery. The scheme follows the secret: a
    `whsec_` secret gives Standard Webhooks headers (use `sign_standard` to pass the id)."""
    timestamp = iso_utc_ms(wall_time() if now is None else now)
    return {
        SIGNATURE_HEADER: flowcatalyst_signature(secret, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
    }


def verify(secret, body, signature, timestamp, now=None, tolerance=DEFAULT_TOLERANCE):
    """Receiver side: True when `signature` is the FlowCatalyst signature of `body` under
    `secret` and `timestamp` is within `tolerance` seconds of now."""
    if not signature or not timestamp:
        return False
    sent = parse_iso_utc(timestamp)
    if sent is None:
        return False
    if abs((wall_time() if now is None else now) - sent) > tolerance:
        return False
    return constant_time_equals(flowcatalyst_signature(secret, timestamp, body), signature.lower())


# -- Standard Webhooks --------------------------------------------------------------------------


def is_standard_secret(secret):
    return secret.startswith(STANDARD_PREFIX)


def _standard_key(secret):
    encoded = secret[len(STANDARD_PREFIX) :] if is_standard_secret(secret) else secret
    try:
        return binascii.a2b_base64(encoded)
    except ValueError:  # binascii.Error is a ValueError; MicroPython raises ValueError itself
        raise ValueError("signing secret is not valid base64 after 'whsec_'")


def standard_signature(secret, msg_id, timestamp, body):
    signed = _bytes(msg_id) + b"." + _bytes(str(timestamp)) + b"." + _bytes(body)
    return "v1," + binascii.b2a_base64(hmac_sha256(_standard_key(secret), signed)).decode().strip()


def sign_standard(secret, msg_id, body, now=None):
    timestamp = int(wall_time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_signature(secret, msg_id, timestamp, body),
    }


def verify_standard(secret, msg_id, timestamp, signatures, body, now=None, tolerance=DEFAULT_TOLERANCE):
    """Receiver side of Standard Webhooks: `signatures` is the `webhook-signature` header
    (space-separated `v1,<base64>` entries; any one matching suffices)."""
    if not msg_id or not timestamp or not signatures:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((wall_time() if now is None else now) - sent) > tolerance:
        return False
    expected = standard_signature(secret, msg_id, sent, body)
    ok = False
    for candidate in signatures.split(" "):
        if constant_time_equals(expected, candidate):
            ok = True  # keep comparing: no early exit
    return ok
