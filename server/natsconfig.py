"""NATS JetStream queue settings: the `nats://` queue URI (router spec §7.6) and the checks of
an existing stream and consumer against them. Pure: no IO, no nats-py.

    nats://[user:pass@]host[:port][,host2[:port]...]?stream=..&consumer=..&subject=..&...

`tls://` instead of `nats://` connects with TLS. Every parameter has the §7.6 default; GO's
names are used where GO has one (`max-messages`, `poll-timeout-ms`, `ack-wait-secs`,
`max-deliver`), the rest follow their pattern. An unknown, repeated, empty or out-of-range
parameter raises ValueError naming it.
"""

from urllib.parse import parse_qsl

DEFAULT_PORT = 4222

# parameter -> (attribute, kind, default, low, high); None bounds are open; docs/server.md
# ("NATS JetStream") says what each means. Kind "ms": given in ms, kept in seconds.
_NUMBERS = {
    "max-messages": ("max_messages", int, 10, 1, 256),
    "poll-timeout-ms": ("poll_timeout", "ms", 20000, 1, 3600000),
    "ack-wait-secs": ("ack_wait", float, 120.0, 0.5, 86400 * 7),
    "max-deliver": ("max_deliver", int, 10, -1, None),
    "max-ack-pending": ("max_ack_pending", int, 1000, -1, None),
    "replicas": ("replicas", int, 1, 1, 5),
    "max-age-secs": ("max_age", float, 7 * 86400.0, 0, None),
    "duplicate-window-secs": ("duplicate_window", float, 120.0, 0, None),
    "connect-timeout-secs": ("connect_timeout", float, 10.0, 0.1, 600),
    "reconnect-wait-secs": ("reconnect_wait", float, 2.0, 0.01, 600),
    "max-reconnects": ("max_reconnects", int, -1, -1, None),
    "request-timeout-secs": ("request_timeout", float, 5.0, 0.1, 600),
}
_STRINGS = ("stream", "consumer", "subject", "publish-subject", "storage", "create", "name")
STORAGE_TYPES = ("file", "memory")


class NatsSettings:
    """What a `nats://` URI says; attributes as in _NUMBERS plus servers, stream, consumer,
    subject, publish_subject, storage, create, name."""

    def __init__(self, **overrides):
        self.servers = ["nats://localhost:%d" % DEFAULT_PORT]
        self.stream = "FLOWCATALYST"
        self.consumer = "fc-router"
        self.subject = "flowcatalyst.>"
        self.publish_subject = None  # None: derived from `subject` per message (publish_subject_for)
        self.storage = "file"
        self.create = True  # get-or-create the stream and consumer; False: they must exist
        self.name = "flowcatalyst"  # the connection name the server shows
        for attr, _kind, default, _lo, _hi in _NUMBERS.values():
            setattr(self, attr, default / 1000.0 if _kind == "ms" else default)
        for name in overrides:
            if not hasattr(self, name):
                raise TypeError("unknown NATS setting %r" % name)
            setattr(self, name, overrides[name])
        self.validate()

    @classmethod
    def from_uri(cls, uri):
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme.lower() not in ("nats", "tls"):
            raise ValueError("NATS queue URI must start with nats:// or tls://: %r" % uri)
        netloc, _, query = rest.partition("?")
        netloc, _, path = netloc.partition("/")
        if path.strip("/"):
            raise ValueError("NATS queue URI: unexpected path %r (use ?stream=...)" % path)
        s = cls.__new__(cls)
        cls.__init__(s)
        s.servers = _servers(scheme.lower(), netloc)
        seen = set()
        for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
            if key in seen:
                raise ValueError("NATS queue URI: parameter %r given twice" % key)
            seen.add(key)
            if value == "":
                raise ValueError("NATS queue URI: parameter %r is empty" % key)
            if key in _NUMBERS:
                attr, kind, _d, lo, hi = _NUMBERS[key]
                setattr(s, attr, _number(key, value, kind, lo, hi))
            elif key in _STRINGS:
                setattr(s, key.replace("-", "_"), value)
            else:
                raise ValueError("NATS queue URI: unknown parameter %r (known: %s)" % (key, ", ".join(sorted(list(_NUMBERS) + list(_STRINGS)))))
        if isinstance(s.create, str):
            s.create = _bool("create", s.create)
        s.storage = s.storage.lower()
        s.validate()
        return s

    def validate(self):
        _name("stream", self.stream)
        _name("consumer", self.consumer)
        check_subject("subject", self.subject)
        if self.storage not in STORAGE_TYPES:
            raise ValueError("NATS queue URI: parameter 'storage' must be file or memory, not %r" % self.storage)
        if self.max_deliver == 0:
            raise ValueError("NATS queue URI: parameter 'max-deliver' must be -1 (unlimited) or at least 1")
        if self.max_ack_pending == 0:
            raise ValueError("NATS queue URI: parameter 'max-ack-pending' must be -1 (unlimited) or at least 1")
        if self.max_age and self.duplicate_window > self.max_age:
            raise ValueError("NATS queue URI: parameter 'duplicate-window-secs' may not exceed max-age-secs")
        if self.publish_subject is not None:
            check_subject("publish-subject", self.publish_subject)
            if "*" in self.publish_subject.split(".") or self.publish_subject.endswith(">"):
                raise ValueError("NATS queue URI: parameter 'publish-subject' may not contain wildcards")
            if not subject_within(self.subject, self.publish_subject):
                raise ValueError("NATS queue URI: parameter 'publish-subject' %r is outside subject %r" % (self.publish_subject, self.subject))

    def publish_subject_for(self, message):
        """Where a message is published: `publish-subject` if set; else `<prefix>.<pool>` when
        `subject` is `<prefix>.>` (pool = poolCode with characters a subject token may not hold
        replaced by `_`, or `default`); else `subject` itself when it has no wildcards."""
        if self.publish_subject is not None:
            return self.publish_subject
        tokens = self.subject.split(".")
        if tokens[-1] == ">" and "*" not in tokens:
            return ".".join(tokens[:-1] + [subject_token(message.pool_code)])
        if ">" not in tokens and "*" not in tokens:
            return self.subject
        raise ValueError("NATS subject %r has wildcards other than a final '>': set publish-subject to publish" % self.subject)

    def stream_config(self):
        """The stream we create (as keyword arguments of nats-py's StreamConfig)."""
        return {
            "name": self.stream,
            "subjects": [self.subject],
            "retention": "workqueue",
            "storage": self.storage,
            "num_replicas": self.replicas,
            "max_age": self.max_age,
            "duplicate_window": self.duplicate_window,
        }

    def consumer_config(self):
        """The durable pull consumer we create (keyword arguments of ConsumerConfig)."""
        return {
            "durable_name": self.consumer,
            "ack_policy": "explicit",
            "deliver_policy": "all",
            "filter_subject": self.subject,
            "ack_wait": self.ack_wait,
            "max_deliver": self.max_deliver,
            "max_ack_pending": self.max_ack_pending,
        }


def stream_problems(settings, have):
    """Compare an existing stream's config (a dict of StreamConfig fields) with ours. Returns
    (errors, differences): errors make it unusable, differences are (setting, have, want)."""
    errors, diffs = [], []
    subjects = have.get("subjects") or []
    if not any(subject_within(p, settings.subject) for p in subjects):
        errors.append("stream %s holds subjects %s, which do not cover subject %r" % (settings.stream, subjects, settings.subject))
    want = settings.stream_config()
    for key in ("retention", "storage", "num_replicas", "max_age", "duplicate_window"):
        if not _same(have.get(key), want[key]):
            diffs.append((key, have.get(key), want[key]))
    return errors, diffs


def consumer_problems(settings, have):
    """As stream_problems, for an existing consumer's config."""
    errors, diffs = [], []
    name = "consumer %s on stream %s" % (settings.consumer, settings.stream)
    if have.get("deliver_subject"):
        errors.append("%s is a push consumer (deliver_subject %r); a pull consumer is needed" % (name, have["deliver_subject"]))
    if have.get("ack_policy") != "explicit":
        errors.append("%s has ack_policy %r; explicit is needed" % (name, have.get("ack_policy")))
    filters = have.get("filter_subjects") or ([have["filter_subject"]] if have.get("filter_subject") else [])
    if filters != [settings.subject]:
        errors.append("%s filters %s, not subject %r" % (name, filters or "every subject", settings.subject))
    want = settings.consumer_config()
    for key in ("ack_wait", "max_deliver", "max_ack_pending"):
        if not _same(have.get(key), want[key]):
            diffs.append((key, have.get(key), want[key]))
    return errors, diffs


def describe(diffs):
    return ", ".join("%s=%s (configured %s)" % d for d in diffs)


def subject_within(pattern, subject):
    """Every subject `subject` (which may hold wildcards) matches is matched by `pattern`."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return i < len(s)
        if i >= len(s) or s[i] == ">":
            return False
        if token != "*" and token != s[i]:
            return False
    return len(s) == len(p)


def subject_token(text):
    """A single subject token from free text (a pool code): `default` when empty."""
    if not text:
        return "default"
    return "".join(c if (c.isalnum() and c.isascii()) or c in "-_" else "_" for c in text)


def check_subject(param, subject):
    tokens = subject.split(".")
    for i, t in enumerate(tokens):
        if not t or any(c in t for c in " \t\r\n") or (t != ">" and ">" in t) or (t != "*" and "*" in t):
            raise ValueError("NATS queue URI: parameter %r: invalid subject %r" % (param, subject))
        if t == ">" and i != len(tokens) - 1:
            raise ValueError("NATS queue URI: parameter %r: '>' must be the last token of %r" % (param, subject))


def _name(param, value):
    if not value or any(c in value for c in " \t\r\n.*>/\\"):
        raise ValueError("NATS queue URI: parameter %r: invalid name %r (no spaces, dots, wildcards or slashes)" % (param, value))


def _servers(scheme, netloc):
    userinfo, at, hosts = netloc.rpartition("@")
    prefix = scheme + "://" + (userinfo + "@" if at else "")
    out = []
    for part in (hosts or "localhost").split(","):
        host, port = _host_port(part.strip() or "localhost")
        out.append("%s%s:%d" % (prefix, host, port))
    return out  # nats-py reads user:pass (or a token) from each URL itself


def _host_port(part):
    if part.startswith("["):  # [IPv6]:port
        host, _, rest = part[1:].partition("]")
        host = "[" + host + "]"
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = part.partition(":")
    if not host:
        raise ValueError("NATS queue URI: empty host in %r" % part)
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("NATS queue URI: bad port %r" % port)
    return host, int(port)


def _number(param, value, kind, lo, hi):
    try:
        n = int(value) if kind in (int, "ms") else float(value)
    except ValueError:
        raise ValueError("NATS queue URI: parameter %r must be %s, not %r" % (param, "an integer" if kind in (int, "ms") else "a number", value)) from None
    if n != n or (lo is not None and n < lo) or (hi is not None and n > hi):
        bounds = "at least %s" % lo if hi is None else "between %s and %s" % (lo, hi)
        raise ValueError("NATS queue URI: parameter %r must be %s, not %r" % (param, bounds, value))
    return n / 1000.0 if kind == "ms" else n


def _bool(param, value):
    v = value.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError("NATS queue URI: parameter %r must be true or false, not %r" % (param, value))


def _same(have, want):
    if isinstance(want, float) or isinstance(have, float):
        try:
            return abs(float(have or 0) - float(want or 0)) < 1e-3
        except (TypeError, ValueError):
            return False
    return have == want
