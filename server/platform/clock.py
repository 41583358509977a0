"""Timestamps as the platform keeps them: fixed-width RFC 3339 UTC strings with six fraction
digits, `2026-05-24T08:30:00.123456Z` (spec/platform.md §2.7, §3.1). The same string is
stored (SQLite TEXT; PostgreSQL TIMESTAMPTZ, read back through store/postgres.py's loader),
compared (fixed width: string order is time order) and sent on the wire.
"""

import time
from datetime import datetime, timezone

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_epoch(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).strftime(FORMAT)


def now():
    return format_epoch(time.time())


def after(seconds, start=None):
    """The timestamp `seconds` after `start` (default: now)."""
    base = time.time() if start is None else to_epoch(start)
    return format_epoch(base + seconds)


def to_epoch(stamp):
    """Seconds since the epoch of a stored timestamp."""
    return datetime.strptime(stamp, FORMAT).replace(tzinfo=timezone.utc).timestamp()


def parse(text):
    """Any RFC 3339 / ISO 8601 time with a zone (or a naive one, taken as UTC), in our form;
    ValueError says why not."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("must be an RFC 3339 timestamp such as 2026-05-24T08:30:00Z")
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(
            "%r is not an RFC 3339 timestamp (e.g. 2026-05-24T08:30:00Z)" % text
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime(FORMAT)


def milliseconds(stamp):
    """The webhook-signature form, milliseconds: `2026-05-24T08:30:00.123Z`."""
    return stamp[:23] + "Z"


def from_postgres(text):
    """A TIMESTAMPTZ as PostgreSQL writes it in a UTC session (`2026-05-24 08:30:00.12+00`)
    in our form."""
    date_time, _, fraction = text[:-3].partition(".")
    return "%sT%s.%sZ" % (date_time[:10], date_time[11:], (fraction + "000000")[:6])


def age_seconds(stamp, now_epoch=None):
    return (time.time() if now_epoch is None else now_epoch) - to_epoch(stamp)
