"""The message pointer: the JSON body a queue carries (router spec §1).

Parsing is lenient where FlowCatalyst's readers differ (absent vs null optional keys, unknown
`dispatchMode` → IMMEDIATE, as GO) and strict where delivery depends on it: `id`,
`mediationType` and `mediationTarget` are required, and every field has the type it must have.
A malformed pointer raises `MessageError` naming the field, so the caller can set the message
aside with that reason; nothing here raises anything else for bad input.

Beyond the existing implementations a pointer may carry the delivery itself: `payload` (any
JSON) is then POSTed as the body instead of `{"messageId": ...}`, with optional extra `headers`.
"""

from . import jsoncodec

IMMEDIATE = "IMMEDIATE"
NEXT_ON_ERROR = "NEXT_ON_ERROR"
BLOCK_ON_ERROR = "BLOCK_ON_ERROR"
DISPATCH_MODES = (IMMEDIATE, NEXT_ON_ERROR, BLOCK_ON_ERROR)

DEFAULT_GROUP = "__DEFAULT__"
MAX_ID_LENGTH = 512
MAX_TARGET_LENGTH = 2048

# Headers a pointer may not set: the transport owns framing, the router owns identity.
_RESERVED_HEADERS = ("host", "content-length", "transfer-encoding", "connection")
_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ABSENT = object()


class MessageError(ValueError):
    """A pointer that cannot be delivered; `field` names what is wrong and `reason` says why."""

    def __init__(self, field, reason):
        super().__init__("%s: %s" % (field, reason) if field else reason)
        self.field = field
        self.reason = reason


class Message:
    __slots__ = (
        "id",
        "pool_code",
        "auth_token",
        "signing_secret",
        "mediation_type",
        "mediation_target",
        "message_group_id",
        "high_priority",
        "dispatch_mode",
        "payload",
        "headers",
    )

    def __init__(
        self,
        id,
        mediation_target,
        pool_code="",
        auth_token=None,
        signing_secret=None,
        mediation_type="HTTP",
        message_group_id=None,
        high_priority=False,
        dispatch_mode=IMMEDIATE,
        payload=_ABSENT,
        headers=None,
    ):
        self.id = id
        self.pool_code = pool_code
        self.auth_token = auth_token
        self.signing_secret = signing_secret
        self.mediation_type = mediation_type
        self.mediation_target = mediation_target
        self.message_group_id = message_group_id
        self.high_priority = high_priority
        self.dispatch_mode = dispatch_mode
        self.payload = payload
        self.headers = headers

    @property
    def has_payload(self):
        return self.payload is not _ABSENT

    @property
    def ordered(self):
        """True for NEXT_ON_ERROR and BLOCK_ON_ERROR (`requires_ordering` in the spec)."""
        return self.dispatch_mode != IMMEDIATE

    @property
    def group(self):
        """The message group key; messages without one share `__DEFAULT__`."""
        return self.message_group_id or DEFAULT_GROUP

    def to_dict(self):
        """The wire form: every FlowCatalyst field always present (as the Rust writer does)."""
        d = {
            "id": self.id,
            "poolCode": self.pool_code,
            "authToken": self.auth_token,
            "signingSecret": self.signing_secret,
            "mediationType": self.mediation_type,
            "mediationTarget": self.mediation_target,
            "messageGroupId": self.message_group_id,
            "highPriority": self.high_priority,
            "dispatchMode": self.dispatch_mode,
        }
        if self.has_payload:
            d["payload"] = self.payload
        if self.headers:
            d["headers"] = self.headers
        return d

    def to_json(self):
        return jsoncodec.dumps(self.to_dict())

    def __repr__(self):
        return "<Message %s pool=%s group=%s mode=%s>" % (
            self.id,
            self.pool_code or "-",
            self.message_group_id,
            self.dispatch_mode,
        )


def parse_message(data):
    """Parse a pointer from JSON text, UTF-8 bytes or an already-decoded dict."""
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        try:
            data = jsoncodec.loads(data)
        except (ValueError, UnicodeError) as e:
            raise MessageError("", "body is not valid JSON (%s)" % e)
    if not isinstance(data, dict):
        raise MessageError("", "body must be a JSON object, got %s" % _json_type(data))

    msg_id = _string(data, "id", required=True)
    if len(msg_id) > MAX_ID_LENGTH:
        raise MessageError("id", "longer than %d characters" % MAX_ID_LENGTH)

    mediation_type = _string(data, "mediationType", required=True)
    if mediation_type.upper() != "HTTP":
        raise MessageError("mediationType", "unsupported value %r (only \"HTTP\")" % mediation_type)

    target = _string(data, "mediationTarget", required=True)
    check_target(target)

    mode = _string(data, "dispatchMode")
    mode = mode.upper() if mode else IMMEDIATE
    if mode not in DISPATCH_MODES:
        mode = IMMEDIATE  # lenient, as GO: an unknown mode must not make a message undeliverable

    high = data.get("highPriority")
    if high is None:
        high = False
    elif not isinstance(high, bool):
        raise MessageError("highPriority", "must be true or false, got %s" % _json_type(high))

    secret = _string(data, "signingSecret")
    if secret and secret.startswith("whsec_"):
        _check_standard_secret(secret)

    headers = data.get("headers")
    if headers is not None:
        headers = _headers(headers)

    return Message(
        msg_id,
        target,
        pool_code=_string(data, "poolCode") or "",
        auth_token=_string(data, "authToken"),
        signing_secret=secret,
        mediation_type="HTTP",
        message_group_id=_string(data, "messageGroupId"),
        high_priority=high,
        dispatch_mode=mode,
        payload=data["payload"] if "payload" in data else _ABSENT,
        headers=headers,
    )


def check_target(target):
    """A mediation target must be an absolute http(s) URL with a host."""
    if len(target) > MAX_TARGET_LENGTH:
        raise MessageError("mediationTarget", "longer than %d characters" % MAX_TARGET_LENGTH)
    lower = target.lower()
    if lower.startswith("http://"):
        rest = target[7:]
    elif lower.startswith("https://"):
        rest = target[8:]
    else:
        raise MessageError("mediationTarget", "must be an http:// or https:// URL, got %r" % target)
    host = rest.split("/", 1)[0].split("?", 1)[0]
    if not host or host.startswith(":") or " " in target:
        raise MessageError("mediationTarget", "not a valid URL: %r" % target)


def _check_standard_secret(secret):
    import binascii

    try:
        key = binascii.a2b_base64(secret[6:])
    except ValueError:
        key = b""
    if not key:
        raise MessageError("signingSecret", "a whsec_ secret must be followed by base64 key bytes")


def _string(data, key, required=False):
    value = data.get(key)
    if value is None:
        if required:
            raise MessageError(key, "is required")
        return None
    if not isinstance(value, str):
        raise MessageError(key, "must be a string, got %s" % _json_type(value))
    if required and not value:
        raise MessageError(key, "must not be empty")
    return value


def _headers(headers):
    if not isinstance(headers, dict):
        raise MessageError("headers", "must be an object of header names to strings")
    out = {}
    for name in headers:
        value = headers[name]
        field = "headers." + str(name)
        if not name or any(c not in _TOKEN_CHARS for c in name):
            raise MessageError(field, "not a valid HTTP header name")
        if name.lower() in _RESERVED_HEADERS:
            raise MessageError(field, "is set by the router and cannot be overridden")
        if not isinstance(value, str):
            raise MessageError(field, "must be a string, got %s" % _json_type(value))
        if "\r" in value or "\n" in value:
            raise MessageError(field, "must not contain line breaks")
        out[name] = value
    return out


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
