"""History of the queues' counters for `/monitoring/queue-stats?time_window=` (router spec §9.2).

Each queue object counts what happened to it since it was created (`counters`: published,
duplicates, received, acked, nacked, deferred, dead_lettered). Every `interval` seconds (60)
a snapshot of every queue's counters is kept, for `keep` seconds (30 minutes). A windowed
figure is the current counter minus the newest snapshot at least `window` seconds old; when
the history does not reach back that far, the oldest snapshot is used (as RS does). Snapshots
are tied to the queue object they were taken from: a queue restarted by a config change starts
counting from zero, and its window then begins at its restart.
"""

import asyncio
from collections import deque

from flowcatalyst.core.compat import wall_time
from flowcatalyst.core.log import logger

WINDOWS = {"5min": 300, "5m": 300, "30min": 1800, "30m": 1800, "all": None}

_log = logger("api")


def parse_window(text):
    """Seconds for a `time_window` value (None: all time); ValueError for anything else."""
    if text is None or text == "":
        return None
    key = text.strip().lower()
    if key not in WINDOWS:
        raise ValueError("time_window must be one of 5min, 5m, 30min, 30m, all; got %r" % text)
    return WINDOWS[key]


def counters_of(queue):
    return dict(getattr(queue, "counters", None) or {})


class QueueHistory:
    def __init__(self, interval=60.0, keep=1800.0, clock=wall_time):
        self.interval = interval
        self.keep = keep
        self.clock = clock
        self.last = None
        self._lines = {}  # queue name -> deque of (time, queue object id, counters)

    def snapshot(self, queues, now=None):
        """Record the counters of `queues` ({name: queue}) now."""
        now = self.clock() if now is None else now
        for name in list(self._lines):
            if name not in queues:
                del self._lines[name]
        for name, queue in queues.items():
            line = self._lines.get(name)
            if line is None:
                line = self._lines[name] = deque()
            line.append((now, id(queue), counters_of(queue)))
            while len(line) > 1 and now - line[0][0] > self.keep + self.interval:
                line.popleft()
        self.last = now

    def snapshot_if_due(self, queues, now=None):
        now = self.clock() if now is None else now
        if self.last is None or now - self.last >= self.interval:
            self.snapshot(queues, now)

    def counters(self, name, queue, window, now=None):
        """The queue's counters over the last `window` seconds (None: since it started)."""
        current = counters_of(queue)
        if window is None:
            return current
        now = self.clock() if now is None else now
        base = None
        for taken, ident, counters in self._lines.get(name, ()):
            if ident != id(queue):
                continue
            if base is None or taken <= now - window:
                base = counters  # the oldest of this queue object, then the newest old enough
            if taken > now - window:
                break
        if base is None:
            return current
        return {key: max(current[key] - base.get(key, 0), 0) for key in current}

    async def run(self, edge):
        """Take a snapshot now and every `interval` seconds while the router runs."""
        router = edge.router
        while router.running:
            try:
                self.snapshot_if_due(edge.queues)
            except Exception as e:  # monitoring must never take anything down
                _log.warn("queue counter snapshot failed", error=repr(e))
            await asyncio.sleep(min(self.interval, 1.0))
