"""The dispatch job's life (spec/platform.md §1.7, GO's machine with the fixes of §4.5, §10.4).

Theory of operation. Only the scheduler moves a job out of PENDING, and only the dispatch
callback moves it out of QUEUED into PROCESSING and on to its outcome; operators requeue and
cancel. Each move is one conditional UPDATE (`WHERE status IN sources(event)`), so two
processes racing for a job cannot both move it: the loser changes no row.

    PENDING    --CLAIM-----------> QUEUED       scheduler: due, its group free, published next
    QUEUED     --PUBLISH_FAILED--> PENDING      the queue refused the pointer
    QUEUED     --STALE-----------> PENDING      no callback came (pointer lost, router gone)
    QUEUED     --START-----------> PROCESSING   the callback took it (one callback wins)
    PROCESSING --SUCCEED---------> COMPLETED    2xx
    PROCESSING --DEFER-----------> PENDING      2xx {"ack": false} or 429: later, no attempt used
    PROCESSING --RETRY-----------> PENDING      failed, attempts left: scheduled_for = backoff
    PROCESSING --FAIL------------> FAILED       failed, no attempts left
    PROCESSING --STUCK-----------> PENDING      the callback died mid-delivery (timeout passed)
    FAILED, CANCELLED, EXPIRED --REQUEUE--> PENDING   operator replay, attempts reset
    PENDING, QUEUED, FAILED    --CANCEL---> CANCELLED operator; a queued pointer then finds a
                                                      terminal job and is acknowledged
"""

PENDING = "PENDING"
QUEUED = "QUEUED"
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
EXPIRED = "EXPIRED"

STATUSES = (PENDING, QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED, EXPIRED)
TERMINAL = (COMPLETED, FAILED, CANCELLED, EXPIRED)

TRANSITIONS = {
    (PENDING, "CLAIM"): QUEUED,
    (QUEUED, "PUBLISH_FAILED"): PENDING,
    (QUEUED, "STALE"): PENDING,
    (QUEUED, "START"): PROCESSING,
    (PROCESSING, "SUCCEED"): COMPLETED,
    (PROCESSING, "DEFER"): PENDING,
    (PROCESSING, "RETRY"): PENDING,
    (PROCESSING, "FAIL"): FAILED,
    (PROCESSING, "STUCK"): PENDING,
    (FAILED, "REQUEUE"): PENDING,
    (CANCELLED, "REQUEUE"): PENDING,
    (EXPIRED, "REQUEUE"): PENDING,
    (PENDING, "CANCEL"): CANCELLED,
    (QUEUED, "CANCEL"): CANCELLED,
    (FAILED, "CANCEL"): CANCELLED,
}

# Dispatch modes (DESIGN.md "Dispatch modes, precisely").
IMMEDIATE = "IMMEDIATE"
NEXT_ON_ERROR = "NEXT_ON_ERROR"
BLOCK_ON_ERROR = "BLOCK_ON_ERROR"
MODES = (IMMEDIATE, NEXT_ON_ERROR, BLOCK_ON_ERROR)

DEFAULT_RETRY_SCHEDULE = (
    5,
    15,
    30,
    60,
    120,
)  # seconds after attempt 1, 2, 3, ...; the last repeats
DEFAULT_DEFER_SECONDS = 30


class InvalidTransition(ValueError):
    pass


def next_status(status, event):
    """The status after `event`; InvalidTransition when `event` cannot happen in `status`."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise InvalidTransition(
            "a %s job cannot %s" % (status, event.lower().replace("_", " "))
        ) from None


def sources(event):
    """The statuses `event` applies to, in STATUSES order (for `WHERE status IN (...)`)."""
    return tuple(s for s in STATUSES if (s, event) in TRANSITIONS)


def after_failure(attempt_number, max_retries):
    """RETRY or FAIL: `max_retries` counts deliveries in all (spec §1.4)."""
    return "FAIL" if attempt_number >= max_retries else "RETRY"


def backoff(attempt_number, schedule=DEFAULT_RETRY_SCHEDULE):
    """Seconds to wait after failed attempt `attempt_number` (1-based)."""
    index = min(max(attempt_number, 1), len(schedule)) - 1
    return schedule[index]


def parse_status(text):
    """A status as written by any implementation (spec §1.7: IN_PROGRESS, ERROR; unknown:
    PENDING)."""
    value = (text or "").strip().upper()
    if value in STATUSES:
        return value
    return {"IN_PROGRESS": PROCESSING, "ERROR": FAILED}.get(value, PENDING)


def parse_mode(text):
    """A dispatch mode in SCREAMING_SNAKE or RS's run-together form (BLOCKONERROR); None if
    it is none of them."""
    value = (text or "").strip().upper()
    for mode in MODES:
        if value in (mode, mode.replace("_", "")):
            return mode
    return None


def group_key(mode, subscription_id, message_group):
    """The line an ordered job waits in (NULL for IMMEDIATE jobs and jobs without a group)."""
    if mode == IMMEDIATE or not message_group:
        return None
    return "%s|%s" % (subscription_id or "", message_group)
