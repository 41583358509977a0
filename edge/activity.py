"""`GET /monitoring/activity` *(addition)*: what the dashboard shows that no other route has —
deliveries over the last minutes, and the age of each queue's oldest pending message.

Every `interval` seconds (5) the router's cumulative delivery counter
(`fc_messages_processed_total`, all pools: succeeded, and every other outcome as failed) is
sampled and kept for `keep` seconds (15 minutes): about 180 samples. The answer turns the samples
into one point per interval, the last one running from the newest sample to now. The counter
only grows (it outlives pools removed by a config change), so the points never go negative.
"""

import asyncio
from collections import deque

from flowcatalyst.core.compat import wall_time
from flowcatalyst.core.log import logger

from .api_common import json_response, route

COLUMNS = ("timeMs", "seconds", "succeeded", "failed")
MIN_LIVE_SECONDS = 1.0  # a shorter tail is left to the next point (its rate would be noise)

_log = logger("api")


def delivered_totals(router):
    """(succeeded, failed) deliveries since the router started, all pools."""
    metric = router.metrics.processed
    index = metric.labelnames.index("success")
    succeeded = failed = 0
    for labels, count in list(metric.values.items()):
        if labels[index] == "true":
            succeeded += count
        else:
            failed += count
    return succeeded, failed


class DeliveryHistory:
    def __init__(self, interval=5.0, keep=900.0, clock=wall_time):
        self.interval = interval
        self.keep = keep
        self.clock = clock
        self.samples = deque()  # (time, succeeded, failed), oldest first

    def sample(self, totals, now=None):
        now = self.clock() if now is None else now
        self.samples.append((now, totals[0], totals[1]))
        while len(self.samples) > 1 and now - self.samples[0][0] > self.keep:
            self.samples.popleft()

    def sample_if_due(self, router, now=None):
        now = self.clock() if now is None else now
        if not self.samples or now - self.samples[-1][0] >= self.interval:
            self.sample(delivered_totals(router), now)

    def points(self, totals, now=None):
        """[[end time ms, seconds, succeeded, failed]] per interval, oldest first."""
        now = self.clock() if now is None else now
        line = list(self.samples)
        if line and now - line[-1][0] >= MIN_LIVE_SECONDS:
            line.append((now, totals[0], totals[1]))
        out = []
        for before, after in zip(line, line[1:], strict=False):
            out.append(
                [
                    int(round(after[0] * 1000)),
                    round(after[0] - before[0], 3),
                    max(after[1] - before[1], 0),
                    max(after[2] - before[2], 0),
                ]
            )
        return out

    async def run(self, edge):
        """Sample now and every `interval` seconds while the router runs."""
        router = edge.router
        while router.running:
            try:
                self.sample_if_due(router)
            except Exception as e:  # monitoring must never take anything down
                _log.warn("delivery counter sample failed", error=repr(e))
            await asyncio.sleep(min(self.interval, 1.0))


def register(app, edge, history):
    router = edge.router

    @route(app, "/monitoring/activity")
    async def activity(req):
        now = history.clock()
        history.sample_if_due(router, now)
        totals = delivered_totals(router)
        metrics = await router.queue_metrics()
        return json_response(
            {
                "timeMs": int(round(now * 1000)),
                "intervalSeconds": history.interval,
                "windowSeconds": history.keep,
                "columns": list(COLUMNS),
                "points": history.points(totals, now),
                "totals": {"succeeded": totals[0], "failed": totals[1]},
                "oldestPendingAgeSeconds": {name: (m or {}).get("oldest_pending_age", 0.0) for name, m in metrics.items()},
            }
        )
