"""Process pools: concurrency, rate limit, ordering and circuit breaking for the messages
routed to one pool code (router spec §3.3–§3.6, §5).

Theory of operation. `submit` takes a message's callback without blocking:
- IMMEDIATE messages join one FIFO lane served by up to `concurrency` worker tasks, so they
  run concurrently up to the pool's concurrency and start in arrival order; workers end when
  the lane is empty (a task per message costs several allocations and loop turns more).
- Ordered messages (NEXT_ON_ERROR, BLOCK_ON_ERROR) join their message group; one drain task
  per group delivers them one at a time, high-priority first, so groups run in parallel and
  never overtake themselves.
Each delivery waits for the rate limiter, then for a permit of the FIFO semaphore, asks the
target's circuit breaker, mediates, records the outcome and resolves the callback:

  outcome                  queue action            ordered group afterwards
  SUCCESS, ERROR_CONFIG    ack                     goes on
  other failures           nack(outcome delay)     NEXT_ON_ERROR: goes on (the failed message
                                                   comes back later on its own)
                                                   BLOCK_ON_ERROR: the rest of this poll batch
                                                   in the group is deferred (10 s by default) undelivered
  breaker open             defer(5 s), no request  as for failures

Deferrals are not delivery attempts: queues that count receives (for dead-lettering) do not
count them. Capacity (`max(concurrency * 20, 50)` queued) follows the live concurrency, and
concurrency and rate limit change in place. `drain` stops intake while queued work finishes.
Every callback is resolved exactly once, whatever happens to its task.
"""

import asyncio

from . import classify
from .compat import create_task, monotonic, wall_time
from .fifo import Fifo
from .groups import MessageGroups
from .log import logger
from .message import BLOCK_ON_ERROR
from .poolmetrics import FAILURE, RATE_LIMITED, SUCCESS, TRANSIENT, PoolMetrics
from .ratelimit import RateLimiter
from .semaphore import FifoSemaphore

CASCADE_DELAY = 10

_METRIC_KIND = {
    classify.SUCCESS: SUCCESS,
    classify.ERROR_CONFIG: FAILURE,
    classify.ERROR_PROCESS: TRANSIENT,
    classify.ERROR_CONNECTION: FAILURE,
    classify.RATE_LIMITED: RATE_LIMITED,
    classify.DEFERRED: TRANSIENT,
    classify.CIRCUIT_OPEN: FAILURE,
}

_log = logger("pool")


class PoolObserver:
    """What a pool reports outward; the router overrides these to feed metrics and warnings."""

    def delivered(self, pool, message, outcome, seconds):
        pass

    def rate_limited(self, pool):
        pass

    def capacity_freed(self, pool):
        """A message left the pool's queue (it now holds a permit, or was set aside)."""


class ProcessPool:
    def __init__(self, config, mediator, breakers, observer=None, clock=monotonic, max_samples=10000, cascade_delay=CASCADE_DELAY):
        self.code = config.code
        self.config = config
        self.mediator = mediator
        self.breakers = breakers
        self.observer = PoolObserver() if observer is None else observer
        self.clock = clock
        self.cascade_delay = cascade_delay
        self.semaphore = FifoSemaphore(config.effective_concurrency)
        self.limiter = RateLimiter(config.rate_limit_per_minute, clock)
        self.groups = MessageGroups()
        self.metrics = PoolMetrics(max_samples)
        self.running = True
        self.queue_size = 0  # accepted, not yet holding a permit
        self._tasks = set()
        self._immediate = Fifo()  # IMMEDIATE callbacks waiting for a worker
        self._workers = 0
        self._accepted = set()  # callbacks accepted and not yet handled, for cancel()
        self._abandoned = []  # background nacks of abandoned callbacks, awaited by cancel()

    # -- sizing ---------------------------------------------------------------------------------

    @property
    def concurrency(self):
        return self.semaphore.limit

    @property
    def active_workers(self):
        return self.semaphore.active

    @property
    def capacity(self):
        return max(self.semaphore.limit * 20, 50)

    def available_capacity(self):
        return max(self.capacity - self.queue_size, 0) if self.running else 0

    def update(self, config):
        """Apply a changed concurrency and rate limit in place; queued work is kept."""
        self.config = config
        self.semaphore.set_limit(config.effective_concurrency)
        self.limiter.update(config.rate_limit_per_minute)
        self._start_workers()

    # -- intake ---------------------------------------------------------------------------------

    def submit(self, callback):
        """Queue a message for delivery. Returns None when accepted, else why not ("draining",
        "full"); the caller then answers the message itself."""
        if not self.running:
            return "draining"
        if self.queue_size >= self.capacity:
            return "full"
        self.queue_size += 1
        self._accepted.add(callback)
        message = callback.message
        if message.ordered:
            if self.groups.push(message.group, callback, callback.batch_id, message.high_priority):
                self._spawn(self._drain_group(message.group))
        else:
            self._immediate.append(callback)
            self._start_workers()
        return None

    def _start_workers(self):
        """Enough workers for the IMMEDIATE lane, up to the concurrency."""
        while self._workers < self.semaphore.limit and self._workers < len(self._immediate):
            self._workers += 1
            self._spawn(self._immediate_worker())

    def _spawn(self, coro):
        self._tasks.add(create_task(coro))

    def _task_done(self):
        self._tasks.discard(asyncio.current_task())

    def _abandon(self, callback):
        task = callback.abandon()
        if task is not None:
            self._abandoned = [t for t in self._abandoned if not t.done()]
            self._abandoned.append(task)

    # -- workers --------------------------------------------------------------------------------

    async def _immediate_worker(self):
        callback = None
        try:
            # More workers than permits (after a resize down) would only queue on the semaphore.
            while self._immediate and self._workers <= self.semaphore.limit:
                callback = self._immediate.popleft()
                await self._deliver(callback)
                self._accepted.discard(callback)
                callback = None
        finally:
            self._workers -= 1
            if callback is not None:
                self._abandon(callback)
                self._accepted.discard(callback)
            self._task_done()

    async def _drain_group(self, key):
        callback = None
        try:
            while True:
                callback, held = self.groups.pop(key)
                if callback is None:
                    return
                if held:
                    self.queue_size -= 1
                    self.observer.capacity_freed(self)
                    await callback.defer(self.cascade_delay)
                else:
                    outcome = await self._deliver(callback)
                    if not outcome.acked and callback.message.dispatch_mode == BLOCK_ON_ERROR:
                        self.groups.hold(key, callback.batch_id)
                self._accepted.discard(callback)
        finally:
            if callback is not None:
                self._abandon(callback)
            leftovers = self.groups.take_all(key)  # empty unless this task died abnormally
            self.queue_size -= len(leftovers)
            for item in leftovers:
                self._abandon(item)
            if leftovers:
                _log.error("group drain ended abnormally", pool=self.code, group=key, abandoned=len(leftovers))
            self._task_done()

    async def _deliver(self, callback):
        message = callback.message
        permitted = False
        try:
            if await self.limiter.acquire():
                self.metrics.record(RATE_LIMITED, 0.0, wall_time())
                self.observer.rate_limited(self)
            await self.semaphore.acquire()
            permitted = True
            self.queue_size -= 1
            self.observer.capacity_freed(self)
            try:
                outcome, seconds = await self._attempt(message)
            finally:
                self.semaphore.release()
        finally:
            if not permitted:
                self.queue_size -= 1
        self.metrics.record(_METRIC_KIND[outcome.result], seconds * 1000.0, wall_time())
        self.observer.delivered(self, message, outcome, seconds)
        if outcome.acked:
            await callback.ack()
        elif outcome.result == classify.CIRCUIT_OPEN:
            await callback.defer(outcome.delay)
        else:
            await callback.nack(outcome.nack_delay, outcome.message)
        return outcome

    async def _attempt(self, message):
        breaker = self.breakers.get(message.mediation_target)
        if not breaker.allow_request(self.clock()):
            return classify.circuit_open_outcome(message.mediation_target), 0.0
        started = self.clock()
        try:
            outcome = await self.mediator.mediate(message)
        except Exception as e:  # a bug in a transport must not lose the message or the loop
            _log.error("mediation raised", pool=self.code, messageId=message.id, error=repr(e))
            outcome = classify.Outcome(classify.ERROR_PROCESS, None, classify.DEFAULT_RETRY_DELAY, "Internal error: %r" % e)
        finished = self.clock()
        breaker.record(classify.BREAKER_RECORD[outcome.result], finished)
        return outcome, finished - started

    # -- lifecycle ------------------------------------------------------------------------------

    def drain(self):
        """Stop taking new messages; what is queued is still delivered."""
        self.running = False

    def is_idle(self):
        return self.queue_size == 0 and self.semaphore.active == 0 and not self._tasks

    async def cancel(self):
        """Stop all work now; every unresolved message is nacked before this returns."""
        self.running = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except BaseException:  # CancelledError, or whatever the task died of
                pass
        # A task cancelled before its first step never runs its finally: answer for it here.
        for callback in self._accepted:
            self._abandon(callback)
        self._accepted = set()
        self._immediate = Fifo()
        self.groups = MessageGroups()
        self.queue_size = 0
        abandoned, self._abandoned = self._abandoned, []
        for task in abandoned:
            await task

    # -- reporting ------------------------------------------------------------------------------

    def stats(self, now=None):
        return {
            "pool_code": self.code,
            "concurrency": self.semaphore.limit,
            "active_workers": self.semaphore.active,
            "queue_size": self.queue_size,
            "queue_capacity": self.capacity,
            "message_group_count": len(self.groups),
            "rate_limit_per_minute": self.limiter.rpm,
            "is_rate_limited": self.limiter.is_limited(),
            "metrics": self.metrics.to_dict(wall_time() if now is None else now),
        }

