"""Per-pool delivery statistics (router spec §9.4): totals, processing-time percentiles and
rolling 5- and 30-minute windows.

All-time percentiles come from a log-bucketed histogram (5 % wide buckets from 0.01 ms to
15 min, so a percentile is within ~2.5 % of the true value) that costs one list increment per
sample. Windows come from a ring of the most recent `max_samples` samples (time, duration,
kind) in flat arrays.
"""

import math
from array import array

from .timefmt import iso_utc_ms

SUCCESS = 0
FAILURE = 1
RATE_LIMITED = 2
TRANSIENT = 3  # process errors and deferrals: not a failure, not a success

_BASE = 1.05
_LOG_BASE = math.log(_BASE)
_MIN_MS = 0.01
_BUCKETS = int(math.log(900000 / _MIN_MS) / _LOG_BASE) + 2


class PoolMetrics:
    def __init__(self, max_samples=10000):
        self.total_success = 0
        self.total_failure = 0
        self.total_rate_limited = 0
        self.total_transient = 0
        self._hist = None
        self._count = 0
        self._sum = 0.0
        self._min = None
        self._max = 0.0
        self.max_samples = max_samples
        self._times = array("d")
        self._durations = array("d")
        self._kinds = bytearray()
        self._next = 0

    def record(self, kind, duration_ms, now):
        """`now` is a wall-clock epoch so windows can be reported as timestamps."""
        if kind == SUCCESS:
            self.total_success += 1
        elif kind == FAILURE:
            self.total_failure += 1
        elif kind == RATE_LIMITED:
            self.total_rate_limited += 1
        else:
            self.total_transient += 1
        if kind != RATE_LIMITED:
            self._observe(duration_ms)
        if len(self._kinds) < self.max_samples:
            self._times.append(now)
            self._durations.append(duration_ms)
            self._kinds.append(kind)
        else:
            i = self._next
            self._times[i] = now
            self._durations[i] = duration_ms
            self._kinds[i] = kind
            self._next = (i + 1) % self.max_samples

    def _observe(self, ms):
        if self._hist is None:
            self._hist = [0] * _BUCKETS
        i = 0 if ms <= _MIN_MS else min(int(math.log(ms / _MIN_MS) / _LOG_BASE) + 1, _BUCKETS - 1)
        self._hist[i] += 1
        self._count += 1
        self._sum += ms
        if self._min is None or ms < self._min:
            self._min = ms
        if ms > self._max:
            self._max = ms

    def _percentile(self, q):
        if not self._count:
            return 0.0
        rank = q * self._count
        seen = 0
        for i, n in enumerate(self._hist):
            seen += n
            if seen >= rank and n:
                if i == 0:
                    return _MIN_MS
                # geometric middle of the bucket, clamped to what was really seen
                mid = _MIN_MS * _BASE ** (i - 0.5)
                return min(max(mid, self._min), self._max)
        return self._max

    @property
    def success_rate(self):
        done = self.total_success + self.total_failure
        return self.total_success / done if done else 1.0

    def processing_time(self):
        return {
            "avgMs": round(self._sum / self._count, 3) if self._count else 0.0,
            "minMs": round(self._min or 0.0, 3),
            "maxMs": round(self._max, 3),
            "p50Ms": round(self._percentile(0.50), 3),
            "p95Ms": round(self._percentile(0.95), 3),
            "p99Ms": round(self._percentile(0.99), 3),
            "sampleCount": self._count,
        }

    def _scan(self, seconds, now):
        """Counts by kind and sorted durations of the samples younger than `seconds`."""
        start = now - seconds
        counts = [0, 0, 0, 0]
        durations = []
        times, values, kinds = self._times, self._durations, self._kinds
        for i in range(len(kinds)):
            if times[i] >= start:
                counts[kinds[i]] += 1
                if kinds[i] != RATE_LIMITED:
                    durations.append(values[i])
        durations.sort()
        return counts, durations

    def window(self, seconds, now):
        """Statistics of the samples younger than `seconds` (as far as the ring reaches)."""
        counts, durations = self._scan(seconds, now)
        n = len(durations)
        return {
            "successCount": counts[SUCCESS],
            "failureCount": counts[FAILURE],
            "rateLimitedCount": counts[RATE_LIMITED],
            "successRate": _rate(counts),
            "throughputPerSec": round(n / seconds, 3),
            "processingTime": {
                "avgMs": round(sum(durations) / n, 3) if n else 0.0,
                "minMs": round(durations[0], 3) if n else 0.0,
                "maxMs": round(durations[-1], 3) if n else 0.0,
                "p50Ms": round(_sorted_percentile(durations, 0.50), 3),
                "p95Ms": round(_sorted_percentile(durations, 0.95), 3),
                "p99Ms": round(_sorted_percentile(durations, 0.99), 3),
                "sampleCount": n,
            },
            "windowStart": iso_utc_ms(now - seconds),
            "windowDurationSecs": seconds,
        }

    def to_dict(self, now):
        return {
            "totalSuccess": self.total_success,
            "totalFailure": self.total_failure,
            "totalRateLimited": self.total_rate_limited,
            "successRate": self.success_rate,
            "processingTime": self.processing_time(),
            "last5Min": self.window(300, now),
            "last30Min": self.window(1800, now),
        }

    def recent_success(self, seconds, now):
        """(success rate, outcomes judged) over the window, for health."""
        counts, _ = self._scan(seconds, now)
        return _rate(counts), counts[SUCCESS] + counts[FAILURE] + counts[TRANSIENT]


def _rate(counts):
    judged = counts[SUCCESS] + counts[FAILURE] + counts[TRANSIENT]
    return counts[SUCCESS] / judged if judged else 1.0


def _sorted_percentile(values, q):
    if not values:
        return 0.0
    i = int(q * len(values) + 0.5) - 1
    return values[min(max(i, 0), len(values) - 1)]
