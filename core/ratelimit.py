"""Per-pool rate limiting (router spec §5.1).

`TokenBucket` is the rule, pure and clock-driven: capacity = requests per minute (a full
minute's burst, as the Rust and Go routers allow), refilled continuously at rpm/60 tokens per
second. `check()` tells whether a request would pass without taking a token (the Rust router's
check consumes one: §14 item 19).

`RateLimiter` is the asyncio gate in front of a pool: callers pass in arrival order (a FIFO
semaphore of one admits a single waiter to the bucket at a time), wait as long as the bucket
requires (there is no wait timeout; backpressure comes from pool capacity and the poll gate),
and a runtime change of the limit applies at once, also to the waiter already sleeping.
"""

import asyncio

from .compat import monotonic
from .semaphore import FifoSemaphore


class TokenBucket:
    __slots__ = ("rpm", "capacity", "rate", "tokens", "updated")

    def __init__(self, rpm, now):
        if rpm <= 0:
            raise ValueError("rate limit must be a positive number of requests per minute")
        self.rpm = rpm
        self.capacity = float(rpm)
        self.rate = rpm / 60.0
        self.tokens = self.capacity
        self.updated = now

    def _refill(self, now):
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.updated = now

    def check(self, now):
        """Would a request pass now? Takes nothing."""
        self._refill(now)
        return self.tokens >= 1.0

    def try_acquire(self, now):
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self, now):
        """Seconds until one token is available (0 if one is available now)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    __slots__ = ("bucket", "_gate", "_changed", "clock")

    def __init__(self, rpm=None, clock=monotonic):
        self.clock = clock
        self.bucket = TokenBucket(rpm, clock()) if rpm else None
        self._gate = FifoSemaphore(1)
        self._changed = asyncio.Event()

    @property
    def rpm(self):
        return self.bucket.rpm if self.bucket else None

    def is_limited(self):
        bucket = self.bucket
        return bucket is not None and not bucket.check(self.clock())

    def update(self, rpm):
        """Change the limit at once; None or 0 removes it. A new limit starts with a full burst."""
        rpm = rpm or None
        if rpm == self.rpm:
            return False
        self.bucket = TokenBucket(rpm, self.clock()) if rpm else None
        self._changed.set()  # wake a waiter sleeping on the old bucket
        return True

    async def acquire(self):
        """Wait for a permit; returns True if the caller had to wait (was rate limited)."""
        bucket = self.bucket
        if bucket is None:
            return False
        if self._gate.try_acquire():
            try:
                if bucket.try_acquire(self.clock()):
                    return False
                await self._wait_for_token()
            finally:
                self._gate.release()
            return True
        await self._gate.acquire()
        try:
            await self._wait_for_token()
        finally:
            self._gate.release()
        return True

    async def _wait_for_token(self):
        while True:
            bucket = self.bucket
            if bucket is None:
                return
            now = self.clock()
            if bucket.try_acquire(now):
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), bucket.wait_time(now))
            except asyncio.TimeoutError:
                pass
