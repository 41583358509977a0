"""A FIFO-fair semaphore whose number of permits can change while it is in use.

asyncio's own Semaphore is missing on MicroPython and is not strictly fair on CPython (a task
that arrives while a woken waiter has not yet run can take the permit first). Here a released
permit is handed directly to the longest waiter, so permits are granted in request order,
which ordered delivery and IMMEDIATE latency both rely on (router spec §5.2, §12).

Resizing takes effect at once: raising the limit wakes waiters; lowering it lets work already
holding permits finish, and grants no new permit until fewer than the new limit are held. (The
Rust router instead waits up to 60 s to reclaim permits and may give up; nothing is gained by
waiting, and the in-place behaviour never exceeds the old limit.)
"""

import asyncio

from .fifo import Fifo


class _Waiter:
    __slots__ = ("event", "granted", "cancelled")

    def __init__(self):
        self.event = asyncio.Event()
        self.granted = False
        self.cancelled = False


class FifoSemaphore:
    __slots__ = ("limit", "active", "_waiters")

    def __init__(self, limit):
        if limit < 1:
            raise ValueError("semaphore limit must be at least 1")
        self.limit = limit
        self.active = 0
        self._waiters = Fifo()

    @property
    def available(self):
        return max(self.limit - self.active, 0)

    @property
    def waiting(self):
        return sum(1 for w in self._waiters if not w.cancelled)

    def try_acquire(self):
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return True
        return False

    async def acquire(self):
        if self.try_acquire():
            return
        waiter = _Waiter()
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except asyncio.CancelledError:
            if waiter.granted:
                self.release()  # granted just as we were cancelled: pass the permit on
            else:
                waiter.cancelled = True
            raise

    def release(self):
        if self.active <= 0:
            raise RuntimeError("semaphore released more times than acquired")
        self.active -= 1
        self._grant()

    def set_limit(self, limit):
        if limit < 1:
            raise ValueError("semaphore limit must be at least 1")
        self.limit = limit
        self._grant()

    def _grant(self):
        waiters = self._waiters
        while self.active < self.limit and waiters:
            waiter = waiters.popleft()
            if waiter.cancelled:
                continue
            waiter.granted = True
            self.active += 1
            waiter.event.set()
