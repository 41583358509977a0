"""Reading request bodies: each reader names the field (with its path in a batch) when the
value is missing or wrong, as a 400 VALIDATION_ERROR. Fields may be sent camelCase or
snake_case (spec §3.2: the SDKs write both); the first name given is the one errors use.

    body = Fields(data)                    # or Fields(item, "items[3]")
    code = body.string("code", required=True, max_length=100, pattern=CODE)
    retries = body.integer("maxRetries", "max_retries", default=3, minimum=1)
"""

import re

from . import clock
from .errors import PlatformError, validation


def snake(name):
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def camel(name):
    """A column's API name: rate_limit -> rateLimit."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Fields:
    def __init__(self, data, where=""):
        if not isinstance(data, dict):
            raise validation(
                "%s must be a JSON object" % (where or "the body"), field=where or None
            )
        self.data = data
        self.where = where

    def path(self, name):
        return "%s.%s" % (self.where, name) if self.where else name

    def fail(self, name, reason):
        raise validation("%s: %s" % (self.path(name), reason), field=self.path(name))

    def raw(self, name, *aliases):
        """(present, value) of the first of name, its snake_case form, and aliases present."""
        for key in (name, snake(name)) + aliases:
            if key in self.data:
                return True, self.data[key]
        return False, None

    def has(self, name, *aliases):
        return self.raw(name, *aliases)[0]

    def _value(self, name, aliases, required, default):
        present, value = self.raw(name, *aliases)
        if not present or value is None:
            if required:
                self.fail(name, "is required")
            return None, default
        return True, value

    def string(
        self,
        name,
        *aliases,
        required=False,
        default=None,
        max_length=None,
        pattern=None,
        strip=True,
        lower=False,
        allow_empty=False,
    ):
        ok, value = self._value(name, aliases, required, default)
        if ok is None:
            return value
        if not isinstance(value, str):
            self.fail(name, "must be a string")
        if strip:
            value = value.strip()
        if lower:
            value = value.lower()
        if not value and not allow_empty:
            if required:
                self.fail(name, "must not be empty")
            return default
        if max_length is not None and len(value) > max_length:
            self.fail(name, "is longer than %d characters" % max_length)
        if pattern is not None and not re.match(pattern, value):
            self.fail(name, "%r does not match %s" % (value, pattern))
        return value

    def integer(self, name, *aliases, required=False, default=None, minimum=None, maximum=None):
        ok, value = self._value(name, aliases, required, default)
        if ok is None:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                self.fail(name, "must be an integer")
        if minimum is not None and value < minimum:
            self.fail(name, "must be at least %d" % minimum)
        if maximum is not None and value > maximum:
            self.fail(name, "must be at most %d" % maximum)
        return value

    def boolean(self, name, *aliases, required=False, default=None):
        ok, value = self._value(name, aliases, required, default)
        if ok is None:
            return value
        if not isinstance(value, bool):
            self.fail(name, "must be true or false")
        return value

    def choice(self, name, *aliases, choices, parse=None, required=False, default=None):
        """One of `choices` (strings, case-insensitive); `parse(text)` may map other spellings
        (returning None when it cannot)."""
        ok, value = self._value(name, aliases, required, default)
        if ok is None:
            return value
        if not isinstance(value, str):
            self.fail(name, "must be one of %s" % ", ".join(choices))
        parsed = parse(value) if parse else value.strip().upper()
        if parsed not in choices:
            self.fail(name, "%r is not one of %s" % (value, ", ".join(choices)))
        return parsed

    def timestamp(self, name, *aliases, required=False, default=None):
        ok, value = self._value(name, aliases, required, default)
        if ok is None:
            return value
        try:
            return clock.parse(value)
        except ValueError as e:
            self.fail(name, str(e))

    def array(self, name, *aliases, required=False, default=None, max_items=None, min_items=0):
        ok, value = self._value(name, aliases, required, default)
        if ok is None:
            return value
        if not isinstance(value, list):
            self.fail(name, "must be an array")
        if len(value) < min_items:
            self.fail(name, "needs at least %d item%s" % (min_items, "" if min_items == 1 else "s"))
        if max_items is not None and len(value) > max_items:
            self.fail(name, "has %d items; at most %d are allowed" % (len(value), max_items))
        return value

    def any(self, name, *aliases, default=None):
        present, value = self.raw(name, *aliases)
        return value if present else default

    def key_values(self, name, *aliases):
        """`[{key, value}]` (the wire form of metadata, contextData, customConfig) from that
        array or from an object; None when absent."""
        present, value = self.raw(name, *aliases)
        if not present or value is None:
            return None
        if isinstance(value, dict):
            value = [{"key": k, "value": v} for k, v in value.items()]
        if not isinstance(value, list):
            self.fail(name, "must be an array of {key, value}")
        out = []
        for i, pair in enumerate(value):
            if not isinstance(pair, dict) or not isinstance(pair.get("key"), str):
                self.fail("%s[%d]" % (name, i), "must be an object with a string key")
            v = pair.get("value")
            out.append(
                {"key": pair["key"], "value": v if v is None or isinstance(v, str) else str(v)}
            )
        return out


class ItemError:
    """A batch item that was refused, and why."""

    def __init__(self, error):
        self.error = error

    def item_result(self):
        status = "FORBIDDEN" if self.error.status == 403 else "BAD_REQUEST"
        out = {"id": "", "status": status, "error": self.error.message}
        field = self.error.extra.get("field")
        if field:
            out["field"] = field
        return out


def batch_results(items, parse):
    """`parse(item, "items[i]")` of each item, or an ItemError where it raised PlatformError."""
    out = []
    for i, item in enumerate(items):
        try:
            out.append(parse(item, "items[%d]" % i))
        except PlatformError as e:
            if e.status not in (400, 403):
                raise
            out.append(ItemError(e))
    return out
