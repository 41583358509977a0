"""The mediator: turns a message pointer into one HTTP request and its answer into an
`Outcome` (router spec §4).

`build_request` is pure: URL, headers and body bytes for a message at a given time. The body is
exactly `{"messageId":"<id>"}` (compact JSON), or the pointer's own `payload` when it carries
one; the bytes that are signed are the bytes that are sent. `HttpMediator.mediate` sends it
through a transport (the core's `HttpClient` unless another is given), classifies the result,
and retries process and connection errors in place (`max_attempts` in total, waiting
`retry_delays` between attempts) before returning the last outcome.
"""

from . import jsoncodec
from .classify import classify_response, classify_transport_error, retry_delay
from .compat import sleep, wall_time
from .httpclient import HttpClient, TransportError
from .signing import is_standard_secret, sign, sign_standard


def build_request(message, now):
    """(url, headers, body) for delivering `message`; `now` is the wall-clock epoch used for
    the signature timestamp."""
    if message.has_payload:
        body = jsoncodec.dumps(message.payload).encode()
    else:
        body = jsoncodec.dumps({"messageId": message.id}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if message.headers:
        for name in message.headers:
            _put(headers, name, message.headers[name])
    # The router's own headers replace a pointer header of the same name in any case.
    if message.auth_token:
        _put(headers, "Authorization", "Bearer " + message.auth_token)
    secret = message.signing_secret
    if secret:
        if is_standard_secret(secret):
            signed = sign_standard(secret, message.id, body, now)
        else:
            signed = sign(secret, body, now)
        for name in signed:
            _put(headers, name, signed[name])
    return message.mediation_target, headers, body


def _put(headers, name, value):
    """Set header `name`, removing any header whose name differs from it only in case."""
    lower = name.lower()
    for existing in list(headers):
        if existing.lower() == lower:
            del headers[existing]
    headers[name] = value


class HttpMediator:
    def __init__(self, transport=None, max_attempts=3, retry_delays=(1.0, 2.0, 3.0), timeout=None):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.transport = HttpClient() if transport is None else transport
        self.max_attempts = max_attempts
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout  # None: the transport's own request timeout

    async def mediate(self, message):
        attempt = 1
        while True:
            outcome = await self.mediate_once(message)
            delay = retry_delay(outcome, attempt, self.max_attempts, self.retry_delays)
            if delay is None:
                return outcome
            if delay > 0:
                await sleep(delay)
            attempt += 1

    async def mediate_once(self, message):
        try:
            now = wall_time()
            url, headers, body = build_request(message, now)
            response = await self.transport.send("POST", url, headers, body, self.timeout)
        except TransportError as e:
            return classify_transport_error(e.kind, e.detail)
        return classify_response(response.status, response.headers, response.body, wall_time())

    async def close(self):
        close = getattr(self.transport, "close", None)
        if close is not None:
            await close()
