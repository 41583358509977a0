"""Response classification and in-mediator retry (router spec §4.4–§4.5), as pure functions.

Theory of operation: one delivery attempt ends in exactly one `Outcome`. Its `result` decides
everything downstream — what the circuit breaker records, whether the mediator tries again
at once, and what the pool does with the queue message:

  result            breaker   retried in mediator   queue action          BLOCK_ON_ERROR group
  SUCCESS           success   no                    ack                   continues
  ERROR_CONFIG      success   no                    ack (dropped, logged) continues
  ERROR_PROCESS     failure   yes                   nack(delay, 30 s)     held
  ERROR_CONNECTION  failure   yes                   nack(30 s)            held
  RATE_LIMITED      —         no                    nack(Retry-After/30)  held
  DEFERRED          —         no                    nack(delaySeconds/30) held
  CIRCUIT_OPEN      rejected  no (no request sent)  nack(5 s)             held

DEFERRED is a 2xx answer with `{"ack": false}`: the target is healthy and asks to be called
again later, so (unlike the Rust router, which calls it a process error) it neither counts
against the breaker nor is re-asked three times in a row, and its `delaySeconds` is honoured.
"""

from . import jsoncodec
from .timefmt import parse_http_date

SUCCESS = "SUCCESS"
ERROR_CONFIG = "ERROR_CONFIG"
ERROR_PROCESS = "ERROR_PROCESS"
ERROR_CONNECTION = "ERROR_CONNECTION"
RATE_LIMITED = "RATE_LIMITED"
DEFERRED = "DEFERRED"
CIRCUIT_OPEN = "CIRCUIT_OPEN"

DEFAULT_RETRY_DELAY = 30  # seconds before a failed message is visible again
CIRCUIT_OPEN_DELAY = 5
MAX_DELAY = 43200  # SQS's visibility ceiling: 12 h

# What the breaker records for each result: True = success, False = failure, None = nothing.
BREAKER_RECORD = {
    SUCCESS: True,
    ERROR_CONFIG: True,
    ERROR_PROCESS: False,
    ERROR_CONNECTION: False,
    RATE_LIMITED: None,
    DEFERRED: None,
    CIRCUIT_OPEN: None,
}
ACKED_RESULTS = (SUCCESS, ERROR_CONFIG)
RETRYABLE_IN_MEDIATOR = (ERROR_PROCESS, ERROR_CONNECTION)

# status -> (description, warning severity or None) for the 4xx/5xx rows that are config errors.
_CONFIG_STATUSES = {
    400: ("Bad request", "ERROR"),
    401: ("Auth error", "ERROR"),
    403: ("Auth error", "ERROR"),
    404: ("Not found", "ERROR"),
    501: ("Not implemented", "CRITICAL"),
}


class Outcome:
    __slots__ = ("result", "status", "delay", "message", "warning")

    def __init__(self, result, status=None, delay=None, message=None, warning=None):
        self.result = result
        self.status = status
        self.delay = delay
        self.message = message
        self.warning = warning  # severity of the Configuration warning this outcome raises

    @property
    def acked(self):
        return self.result in ACKED_RESULTS

    @property
    def nack_delay(self):
        return DEFAULT_RETRY_DELAY if self.delay is None else self.delay

    def __repr__(self):
        return "<Outcome %s status=%s delay=%s %s>" % (self.result, self.status, self.delay, self.message or "")


def classify_response(status, headers, body, now=None):
    """Classify one HTTP response. `headers` is a dict with lower-case names, `body` bytes,
    `now` the wall-clock epoch (needed only for an HTTP-date `Retry-After`)."""
    if 200 <= status < 300:
        ack, delay = _ack_field(body)
        if ack is False:
            return Outcome(DEFERRED, status, delay, "Target returned ack=false")
        return Outcome(SUCCESS, status)
    if status == 429:
        delay = parse_retry_after(headers.get("retry-after"), now)
        return Outcome(RATE_LIMITED, 429, DEFAULT_RETRY_DELAY if delay is None else delay, "HTTP 429: Too Many Requests")
    known = _CONFIG_STATUSES.get(status)
    if known:
        return Outcome(ERROR_CONFIG, status, None, "HTTP %d: %s" % (status, known[0]), known[1])
    if 400 <= status < 500:
        return Outcome(ERROR_CONFIG, status, None, "HTTP %d: Client error" % status)
    if 500 <= status < 600:
        return Outcome(ERROR_PROCESS, status, DEFAULT_RETRY_DELAY, "HTTP %d: Server error" % status)
    return Outcome(ERROR_PROCESS, status, DEFAULT_RETRY_DELAY, "HTTP %d: Unexpected status" % status)


def classify_transport_error(kind, detail):
    """Classify a failure to get any response: `kind` is "timeout", "connect" or "other"."""
    if kind == "timeout":
        text = "Request timeout"
    elif kind == "connect":
        text = "Connection error: %s" % detail
    else:
        text = "Request failed: %s" % detail
    return Outcome(ERROR_CONNECTION, None, DEFAULT_RETRY_DELAY, text)


def circuit_open_outcome(target):
    return Outcome(CIRCUIT_OPEN, None, CIRCUIT_OPEN_DELAY, "Circuit breaker open for %s" % target)


def retry_delay(outcome, attempt, max_attempts, delays):
    """Seconds to wait before attempt `attempt + 1`, or None to stop and return `outcome`.
    `attempt` counts from 1; `max_attempts` is the total number of attempts (3 = two retries);
    `delays` lists the waits after attempt 1, 2, ... (the last one repeats)."""
    if outcome.result not in RETRYABLE_IN_MEDIATOR or attempt >= max_attempts:
        return None
    if not delays:
        return 0
    return delays[attempt - 1] if attempt - 1 < len(delays) else delays[-1]


def parse_retry_after(value, now=None):
    """`Retry-After` as whole seconds (delta-seconds or an HTTP-date), clamped to
    0..MAX_DELAY; None when absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(int(value), MAX_DELAY)
    when = parse_http_date(value)
    if when is None or now is None:
        return None
    seconds = int(when - now + 0.999)
    return min(max(seconds, 0), MAX_DELAY)


def _ack_field(body):
    """(`ack`, `delaySeconds`) from a JSON object body; (None, None) for anything else."""
    if not body or b"false" not in body or body.lstrip()[:1] != b"{":
        return None, None  # only a JSON object that says false can hold back an ack
    try:
        data = jsoncodec.loads(body)
    except (ValueError, UnicodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    ack = data.get("ack")
    if not isinstance(ack, bool):
        return None, None
    delay = data.get("delaySeconds")
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        delay = None
    else:
        delay = min(int(delay), MAX_DELAY)
    return ack, delay
