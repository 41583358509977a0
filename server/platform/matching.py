"""Which subscriptions an event reaches (spec/platform.md §1.3, §1.4).

Event-type codes are `application:subdomain:aggregate:event`. A subscription's pattern has
the same number of colon-separated segments; each is `*` (any one segment) or equal to the
code's. A subscription without a client reaches every event; one with a client only that
client's events.
"""

CODE_SEGMENTS = ("application", "subdomain", "aggregate", "event")


def type_matches(pattern, code):
    if pattern == code:
        return True
    wanted = pattern.split(":")
    actual = code.split(":")
    if len(wanted) != len(actual):
        return False
    for w, a in zip(wanted, actual, strict=True):
        if w != "*" and w != a:
            return False
    return True


def client_matches(subscription_client, event_client):
    return subscription_client is None or subscription_client == event_client


def code_problem(code):
    """None for a valid 4-segment event-type code, else what is wrong with it (naming the
    empty segment)."""
    if not isinstance(code, str) or not code.strip():
        return "the code is required, in the form application:subdomain:aggregate:event"
    parts = code.split(":")
    if len(parts) != 4:
        return "%r has %d segment%s; the code has 4: application:subdomain:aggregate:event" % (
            code,
            len(parts),
            "" if len(parts) == 1 else "s",
        )
    for name, part in zip(CODE_SEGMENTS, parts, strict=True):
        if not part.strip():
            return "%r has an empty %s segment (application:subdomain:aggregate:event)" % (
                code,
                name,
            )
    return None


def pattern_problem(pattern):
    """None for a usable subscription pattern (a code whose segments may be `*`)."""
    if not isinstance(pattern, str) or not pattern.strip():
        return "an event type pattern is required, e.g. orders:*:order:created"
    if any(not part for part in pattern.split(":")):
        return "%r has an empty segment" % pattern
    return None


def split_code(code):
    """(application, subdomain, aggregate) of a type code: its first three segments, None
    where missing or empty (the read models' columns)."""
    parts = (code or "").split(":")
    out = []
    for i in range(3):
        out.append(parts[i] if i < len(parts) and parts[i] else None)
    return tuple(out)
