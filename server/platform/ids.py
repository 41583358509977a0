"""TSIDs (spec/platform.md §1.1): 64-bit time-sorted identifiers as 13 Crockford base32
characters. Layout, most significant first: 42 bits of milliseconds since 2020-01-01 UTC,
10 random bits, a 12-bit counter. The counter starts at a random value each millisecond and
counts up within it, so ids made by one process sort in the order they were made; two
processes differ in the random bits. Aggregates use typed ids: `{prefix}_{tsid}`.
"""

import os
import threading
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
EPOCH_MS = 1577836800000  # 2020-01-01T00:00:00Z

# typed-id prefixes
SUBSCRIPTION = "sub"
DISPATCH_POOL = "dpl"
CONNECTION = "con"
EVENT_TYPE = "evt"
AUDIT_LOG = "aud"

_lock = threading.Lock()
_last_ms = 0
_random = 0
_counter = 0


def _encode(value):
    chars = []
    for _ in range(13):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def tsid(now_ms=None):
    """A new untyped TSID (13 characters)."""
    global _last_ms, _random, _counter
    with _lock:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        if ms <= _last_ms:
            ms = _last_ms  # the clock stepped back or this millisecond goes on
            _counter += 1
            if _counter >= 4096:  # 4096 ids in one millisecond: borrow the next one
                ms += 1
                _counter = 0
        else:
            seed = int.from_bytes(os.urandom(4), "big")
            _random = seed >> 22  # 10 bits
            _counter = seed & 0x7FF  # half the range, so the millisecond has room to count
        _last_ms = ms
        value = ((ms - EPOCH_MS) << 22) | (_random << 12) | _counter
    return _encode(value)


def typed(prefix):
    """A new typed id, e.g. `sub_0HZXEQ5Y8JY5Z` (17 characters)."""
    return prefix + "_" + tsid()


def timestamp_ms(value):
    """The creation time (Unix milliseconds) of a TSID, typed or not; ValueError if it is not one."""
    text = value.rpartition("_")[2].upper()
    if len(text) != 13:
        raise ValueError("a TSID has 13 characters, got %r" % value)
    number = 0
    for ch in text:
        digit = ALPHABET.find(ch)
        if digit < 0:
            raise ValueError("%r is not a Crockford base32 character in %r" % (ch, value))
        number = number * 32 + digit
    return (number >> 22) + EPOCH_MS
