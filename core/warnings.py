"""The warning service (router spec §8.3): operator-facing warnings kept in memory.

A warning has a category and a severity (INFO < WARN < ERROR < CRITICAL). At most `capacity`
are kept; when full the oldest tenth is dropped. Unacknowledged warnings younger than
`active_age` are "active" and feed the health status; `cleanup` forgets old ones.
"""

from .compat import uuid4, wall_time
from .timefmt import iso_utc_ms

ROUTING = "ROUTING"
PROCESSING = "PROCESSING"
CONFIGURATION = "CONFIGURATION"
GROUP_THREAD_RESTART = "GROUP_THREAD_RESTART"
RATE_LIMITING = "RATE_LIMITING"
QUEUE_CONNECTIVITY = "QUEUE_CONNECTIVITY"
POOL_CAPACITY = "POOL_CAPACITY"
POOL_HEALTH = "POOL_HEALTH"
QUEUE_HEALTH = "QUEUE_HEALTH"
CONSUMER_HEALTH = "CONSUMER_HEALTH"
RESOURCE = "RESOURCE"

SEVERITIES = ("INFO", "WARN", "ERROR", "CRITICAL")


def severity_rank(severity):
    return SEVERITIES.index(severity)


class RouterWarning:
    __slots__ = ("id", "category", "severity", "message", "source", "created_at", "acknowledged", "acknowledged_at")

    def __init__(self, category, severity, message, source, created_at):
        self.id = uuid4()
        self.category = category
        self.severity = severity
        self.message = message
        self.source = source
        self.created_at = created_at
        self.acknowledged = False
        self.acknowledged_at = None

    def to_dict(self):
        return {
            "id": self.id,
            "category": self.category,
            "severity": self.severity,
            "message": self.message,
            "source": self.source,
            "timestamp": iso_utc_ms(self.created_at),
            "acknowledged": self.acknowledged,
            "acknowledgedAt": iso_utc_ms(self.acknowledged_at) if self.acknowledged_at else None,
        }


class WarningService:
    def __init__(self, capacity=1000, active_age=1800.0, max_age=8 * 3600.0, clock=wall_time):
        self.capacity = capacity
        self.active_age = active_age
        self.max_age = max_age
        self.clock = clock
        self._items = []  # oldest first
        self._listeners = []

    def add_listener(self, callback):
        """`callback(warning)` is called for every new warning (e.g. to notify a chat channel)."""
        self._listeners.append(callback)

    def add(self, category, severity, message, source):
        if severity not in SEVERITIES:
            raise ValueError("unknown severity %r" % severity)
        if len(self._items) >= self.capacity:
            del self._items[: max(self.capacity // 10, 1)]
        warning = RouterWarning(category, severity, message, source, self.clock())
        self._items.append(warning)
        for callback in self._listeners:
            callback(warning)
        return warning

    def __len__(self):
        return len(self._items)

    def get(self, warning_id):
        for w in self._items:
            if w.id == warning_id:
                return w
        return None

    def list(self, severity=None, category=None, acknowledged=None):
        """Newest first, filtered by exact severity / category / acknowledged state."""
        out = []
        for w in reversed(self._items):
            if severity is not None and w.severity != severity:
                continue
            if category is not None and w.category != category:
                continue
            if acknowledged is not None and w.acknowledged != acknowledged:
                continue
            out.append(w)
        return out

    def active(self, now=None):
        now = self.clock() if now is None else now
        return [w for w in self._items if not w.acknowledged and now - w.created_at < self.active_age]

    def acknowledge(self, warning_id):
        w = self.get(warning_id)
        if w is None:
            return False
        if not w.acknowledged:
            w.acknowledged = True
            w.acknowledged_at = self.clock()
        return True

    def acknowledge_all(self):
        now = self.clock()
        count = 0
        for w in self._items:
            if not w.acknowledged:
                w.acknowledged = True
                w.acknowledged_at = now
                count += 1
        return count

    def clear(self):
        count = len(self._items)
        self._items = []
        return count

    def remove_older_than(self, seconds, now=None):
        now = self.clock() if now is None else now
        keep = [w for w in self._items if now - w.created_at < seconds]
        removed = len(self._items) - len(keep)
        self._items = keep
        return removed

    def cleanup(self, now=None):
        return self.remove_older_than(self.max_age, now)
