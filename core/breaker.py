"""Per-endpoint circuit breakers (router spec §6).

Theory of operation: each mediation target has one breaker, shared by every pool that delivers
to it. The breaker keeps the last `window_size` outcomes. Events are derived from what happened
and then looked up in the transition table; an event a state does not list leaves it as it is.

  state       event                 next state   happens when
  CLOSED      FAILURE_RATE_EXCEEDED OPEN         a failure leaves >= min_calls outcomes in the
                                                 window with failure rate >= threshold
  OPEN        RESET_TIMEOUT_PASSED  HALF_OPEN    a request arrives reset_timeout after the last
                                                 failure; that request is let through
  HALF_OPEN   PROBES_SUCCEEDED      CLOSED       success_threshold probes have succeeded
  HALF_OPEN   PROBE_FAILED          OPEN         any probe fails

OPEN rejects requests (counted as rejected) until its timeout passes. Leaving a state for
CLOSED or HALF_OPEN clears what the old state counted; cumulative counters survive `reset()`.
What counts as success or failure is decided by `classify.BREAKER_RECORD`.
"""

from .compat import monotonic

CLOSED = "CLOSED"
OPEN = "OPEN"
HALF_OPEN = "HALF_OPEN"

FAILURE_RATE_EXCEEDED = "FAILURE_RATE_EXCEEDED"
RESET_TIMEOUT_PASSED = "RESET_TIMEOUT_PASSED"
PROBES_SUCCEEDED = "PROBES_SUCCEEDED"
PROBE_FAILED = "PROBE_FAILED"

TRANSITIONS = {
    CLOSED: {FAILURE_RATE_EXCEEDED: OPEN},
    OPEN: {RESET_TIMEOUT_PASSED: HALF_OPEN},
    HALF_OPEN: {PROBES_SUCCEEDED: CLOSED, PROBE_FAILED: OPEN},
}


class BreakerSettings:
    __slots__ = ("failure_rate_threshold", "min_calls", "success_threshold", "reset_timeout", "window_size")

    def __init__(self, failure_rate_threshold=0.5, min_calls=10, success_threshold=3, reset_timeout=5.0, window_size=100):
        self.failure_rate_threshold = failure_rate_threshold
        self.min_calls = min_calls
        self.success_threshold = success_threshold
        self.reset_timeout = reset_timeout
        self.window_size = window_size


class CircuitBreaker:
    __slots__ = (
        "name",
        "settings",
        "state",
        "_window",
        "_next",
        "_failures",
        "_probe_successes",
        "last_failure",
        "last_activity",
        "successful_calls",
        "failed_calls",
        "rejected_calls",
    )

    def __init__(self, name, settings=None, now=0.0):
        self.name = name
        self.settings = BreakerSettings() if settings is None else settings
        self.state = CLOSED
        self._window = []  # ring buffer of outcomes: True = success
        self._next = 0
        self._failures = 0
        self._probe_successes = 0
        self.last_failure = None
        self.last_activity = now
        self.successful_calls = 0
        self.failed_calls = 0
        self.rejected_calls = 0

    # -- events ---------------------------------------------------------------------------------

    def allow_request(self, now):
        self.last_activity = now
        if self.state == OPEN:
            if self.last_failure is not None and now - self.last_failure >= self.settings.reset_timeout:
                self._fire(RESET_TIMEOUT_PASSED)
                return True
            self.rejected_calls += 1
            return False
        return True

    def record_success(self, now):
        self.last_activity = now
        self.successful_calls += 1
        self._push(True)
        if self.state == HALF_OPEN:
            self._probe_successes += 1
            if self._probe_successes >= self.settings.success_threshold:
                self._fire(PROBES_SUCCEEDED)

    def record_failure(self, now):
        self.last_activity = now
        self.last_failure = now
        self.failed_calls += 1
        self._push(False)
        if self.state == HALF_OPEN:
            self._fire(PROBE_FAILED)
        elif self.state == CLOSED:
            s = self.settings
            if len(self._window) >= s.min_calls and self.failure_rate >= s.failure_rate_threshold:
                self._fire(FAILURE_RATE_EXCEEDED)

    def record(self, success, now):
        """Record an outcome: True success, False failure, None nothing (see BREAKER_RECORD)."""
        if success is True:
            self.record_success(now)
        elif success is False:
            self.record_failure(now)

    def reset(self):
        self.state = CLOSED
        self._clear()

    # -- state ----------------------------------------------------------------------------------

    def _fire(self, event):
        new_state = TRANSITIONS[self.state].get(event)
        if new_state is None:
            return
        self.state = new_state
        if new_state in (CLOSED, HALF_OPEN):
            self._clear()

    def _clear(self):
        self._window = []
        self._next = 0
        self._failures = 0
        self._probe_successes = 0

    def _push(self, ok):
        window = self._window
        if len(window) < self.settings.window_size:
            window.append(ok)
        else:
            if not window[self._next]:
                self._failures -= 1
            window[self._next] = ok
            self._next = (self._next + 1) % len(window)
        if not ok:
            self._failures += 1

    @property
    def failure_rate(self):
        """Failures / outcomes in the window, 0.0..1.0 (0.0 when empty)."""
        n = len(self._window)
        return self._failures / n if n else 0.0

    def stats(self):
        """Resilience4j-compatible JSON (failureRate is a percentage, as there)."""
        return {
            "name": self.name,
            "state": self.state,
            "successfulCalls": self.successful_calls,
            "failedCalls": self.failed_calls,
            "rejectedCalls": self.rejected_calls,
            "failureRate": round(self.failure_rate * 100.0, 2),
            "bufferedCalls": len(self._window),
            "bufferSize": self.settings.window_size,
        }


class BreakerRegistry:
    """All breakers of a router, keyed by the exact mediation target, shared across pools."""

    def __init__(self, settings=None, clock=monotonic, idle_timeout=3600.0):
        self.settings = BreakerSettings() if settings is None else settings
        self.clock = clock
        self.idle_timeout = idle_timeout
        self._breakers = {}

    def get(self, target):
        breaker = self._breakers.get(target)
        if breaker is None:
            breaker = self._breakers[target] = CircuitBreaker(target, self.settings, self.clock())
        return breaker

    def find(self, name):
        return self._breakers.get(name)

    def __len__(self):
        return len(self._breakers)

    def __iter__(self):
        return iter(list(self._breakers.values()))

    def open_count(self):
        return sum(1 for b in self._breakers.values() if b.state == OPEN)

    def reset(self, name):
        breaker = self._breakers.get(name)
        if breaker is None:
            return False
        breaker.reset()
        return True

    def reset_all(self):
        for breaker in self._breakers.values():
            breaker.reset()

    def evict_idle(self, now=None):
        """Forget breakers with no activity for `idle_timeout` seconds; returns how many."""
        now = self.clock() if now is None else now
        idle = [name for name, b in self._breakers.items() if now - b.last_activity >= self.idle_timeout]
        for name in idle:
            del self._breakers[name]
        return len(idle)

    def stats(self):
        return {name: b.stats() for name, b in self._breakers.items()}
