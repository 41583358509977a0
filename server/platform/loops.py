"""The background loops of the stream processor and the scheduler, and how they wake.

Each loop repeats one step, `await step()` -> (rows done, batch size), and sleeps by what the
step found (spec/platform.md §6): a full batch -> at once; some rows -> `busy_pause`; none ->
`idle` seconds or until woken; an error -> logged, counted, `error_pause`. Waking (`Signals.
wake(name)`) ends an idle sleep early: ingest wakes fan-out, fan-out wakes the scheduler, a
finished job wakes the scheduler for the next of its group — so an idle system reacts within
milliseconds instead of a poll interval.
"""

import asyncio
import time

from flowcatalyst.core.log import logger

_log = logger("loops")


class Loops:
    """A part made of background loops (`self.loops`), started and stopped together."""

    def start(self):
        for loop in self.loops:
            loop.start()
        return self

    async def stop(self):
        for loop in self.loops:
            await loop.stop()


class Signals:
    def __init__(self):
        self._events = {}

    def event(self, name):
        event = self._events.get(name)
        if event is None:
            event = self._events[name] = asyncio.Event()
        return event

    def wake(self, name):
        self.event(name).set()

    async def sleep(self, name, seconds):
        """Sleep up to `seconds`; True when woken."""
        event = self.event(name)
        if not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), seconds)
            except asyncio.TimeoutError:
                return False
        event.clear()
        return True


class Loop:
    """One background loop: `start()`, `stop()`, and `health()` for /monitoring."""

    def __init__(
        self, name, step, signals, idle=1.0, busy_pause=0.1, error_pause=5.0, metrics=None
    ):
        self.name = name
        self.step = step
        self.signals = signals
        self.idle = idle
        self.busy_pause = busy_pause
        self.error_pause = error_pause
        self.processed = 0
        self.errors = 0
        self.last_poll = None
        self.last_error = None
        self._task = None
        self._rows = (
            metrics.counter(
                "fc_platform_loop_rows_total", "Rows each platform loop handled", ("loop",)
            )
            if metrics
            else None
        )
        self._failures = (
            metrics.counter(
                "fc_platform_loop_errors_total", "Failed steps of each platform loop", ("loop",)
            )
            if metrics
            else None
        )

    def start(self):
        self._task = asyncio.create_task(self._run(), name="loop-" + self.name)
        return self

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    @property
    def running(self):
        return self._task is not None and not self._task.done()

    def health(self):
        return {
            "running": self.running,
            "processed": self.processed,
            "errors": self.errors,
            "lastPoll": self.last_poll,
            "lastError": self.last_error,
        }

    async def _run(self):
        while True:
            try:
                done, batch = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.errors += 1
                self.last_error = "%s: %s" % (type(e).__name__, e)
                if self._failures is not None:
                    self._failures.inc((self.name,))
                _log.error("loop step failed", loop=self.name, error=self.last_error)
                await asyncio.sleep(self.error_pause)
                continue
            self.last_poll = time.time()
            self.processed += done
            if self._rows is not None and done:
                self._rows.inc((self.name,), done)
            if done and done >= batch:
                await asyncio.sleep(0)  # a full batch: more is waiting
            elif done:
                await self.signals.sleep(self.name, self.busy_pause)
            else:
                await self.signals.sleep(self.name, self.idle)
