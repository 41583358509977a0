"""The router: consumers in, pools out (router spec §2.4, §3.1–§3.2, §3.7, §8).

Theory of operation. Each consumer has one poll loop. Before polling it checks that some pool
has room for a whole batch; if none has, it waits until a pool's queue drains that far (so a
full router neither polls and defers in a hot loop nor idles once room is back); after a poll
it routes the batch and, for brokers where polling costs, waits a little when the batch was
partial or empty. Routing a batch:

  0. copies whose earlier ack failed are deleted now (pending-delete);
  1. redeliveries and external requeues of messages already in the pipeline are absorbed
     (pipeline.py), so a message is worked on at most once at a time;
  2. messages are grouped by pool (unknown and empty codes go to DEFAULT-POOL, which is
     created on first use and kept across config changes); a pool without room for its whole
     share of the batch defers that share for a few seconds;
  3. every message is tracked in the pipeline and submitted with a callback that answers the
     consumer exactly once, using the newest receipt handle of the message.

Config changes apply in place: pools are resized, created or drained (removed pools finish
their queued work, then disappear), consumers are started and stopped; unchanged config is a
no-op. A housekeeping task reaps stale pipeline entries and pending deletes, forgets idle
circuit breakers and old warnings, warns on pipeline growth, and restarts stalled poll loops.
`stop()` stops polling, drains the pools within a timeout, then nacks what is left.
"""

import asyncio

from . import classify
from . import warnings as w
from .breaker import BreakerRegistry
from .callback import ACK, DEFER, NACK, MessageCallback
from .compat import MICROPYTHON, create_task, monotonic, sleep, wall_time, with_timeout
from .config import (
    DEFAULT_POOL_CODE,
    DEFAULT_POOL_CONCURRENCY,
    MAX_POOLS,
    POOL_WARNING_THRESHOLD,
    PoolConfig,
    RouterConfig,
)
from .health import HealthSettings, health_report
from .log import logger
from .mediator import HttpMediator
from .pipeline import NEW, REQUEUE, Pipeline, pipeline_key
from .pool import PoolObserver, ProcessPool
from .ports import ConsumerStopped
from .routermetrics import RouterMetrics

_log = logger("router")


class RouterSettings:
    __slots__ = (
        "poll_batch_size",
        "full_pool_defer",
        "cascade_delay",
        "capacity_wait",
        "error_wait",
        "empty_wait",
        "partial_wait",
        "shutdown_timeout",
        "housekeeping_interval",
        "pipeline_max_age",
        "pending_delete_ttl",
        "pipeline_warning_size",
        "consumer_stall",
        "breaker_eviction_interval",
        "health",
        "max_samples",
        "default_pool",
    )

    def __init__(self, **overrides):
        self.poll_batch_size = 10
        self.full_pool_defer = 5
        self.cascade_delay = 10
        self.capacity_wait = 2.0
        self.error_wait = 1.0
        self.empty_wait = 1.0
        self.partial_wait = 0.5
        self.shutdown_timeout = 60.0
        self.housekeeping_interval = 5.0
        self.pipeline_max_age = 900.0
        self.pending_delete_ttl = 60.0
        self.pipeline_warning_size = 10000
        self.consumer_stall = 60.0
        self.breaker_eviction_interval = 300.0
        self.health = HealthSettings()
        self.max_samples = 1000 if MICROPYTHON else 10000  # per pool: a device has little RAM
        self.default_pool = DEFAULT_POOL_CODE  # where empty and unknown pool codes go
        for name in overrides:
            setattr(self, name, overrides[name])


class ConsumerLoop:
    """A consumer and the state of its poll loop."""

    __slots__ = ("name", "consumer", "config", "task", "heartbeat", "last_poll", "stopped", "restarts", "metrics", "routing")

    def __init__(self, name, consumer, config, now):
        self.name = name
        self.consumer = consumer
        self.config = config
        self.task = None
        self.heartbeat = now
        self.last_poll = None
        self.stopped = False
        self.restarts = 0
        self.metrics = None  # last broker metrics seen
        self.routing = False  # a polled batch is being routed (pause waits for it)


class Router(PoolObserver):
    def __init__(self, consumer_factory=None, mediator=None, breakers=None, warnings=None, settings=None, clock=monotonic, mediator_factory=None):
        """`consumer_factory(queue_config)` returns a QueueConsumer for a configured queue;
        `mediator` delivers (default: an HttpMediator over the core's HTTP client), or
        `mediator_factory(pool_config)` gives each pool its own (closed when the router stops)."""
        self.settings = RouterSettings() if settings is None else settings
        self.clock = clock
        self.consumer_factory = consumer_factory
        self._owns_mediator = mediator is None and mediator_factory is None
        self.mediator = HttpMediator() if self._owns_mediator else mediator
        self.mediator_factory = mediator_factory
        self._pool_mediators = []
        self.breakers = BreakerRegistry(clock=clock) if breakers is None else breakers
        self.warnings = w.WarningService() if warnings is None else warnings
        self.metrics = RouterMetrics(self)
        self.pipeline = Pipeline()
        self.pools = {}
        self.draining_pools = []
        self.consumers = {}
        self.config = RouterConfig()
        self.running = False
        self.polling = True  # False while paused (standby)
        self.started_at = wall_time()
        self._batch_counter = 0
        self._housekeeping = None
        self._stopping = False
        self._last_jobs = {}
        self._warned = {}
        self._room = asyncio.Event()  # set when a pool frees room for a batch
        self._awaiting_room = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, config=None):
        self.running = True
        for loop in list(self.consumers.values()):  # added before the start
            self._start_polling(loop)
        if config is not None:
            await self.apply_config(config)
        self._housekeeping = create_task(self._housekeeping_loop())

    async def stop(self, timeout=None):
        """Stop polling, let the pools finish within `timeout` seconds, then nack the rest."""
        if self._stopping:
            return
        self._stopping = True
        self.running = False
        timeout = self.settings.shutdown_timeout if timeout is None else timeout
        _log.info("router stopping", inFlight=len(self.pipeline), timeout=timeout)
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for loop in list(self.consumers.values()):
            await self._stop_loop(loop)
        pools = list(self.pools.values()) + self.draining_pools
        for pool in pools:
            pool.drain()
        deadline = self.clock() + timeout
        while not all(p.is_idle() for p in pools) and self.clock() < deadline:
            await sleep(0.05)
        unfinished = [p.code for p in pools if not p.is_idle()]
        if unfinished:
            _log.warn("shutdown timeout: abandoning in-flight deliveries", pools=unfinished, inFlight=len(self.pipeline))
        for pool in pools:
            await pool.cancel()
        if len(self.pipeline):
            _log.warn("in-pipeline messages left at shutdown", count=len(self.pipeline))
            self.pipeline.entries.clear()
            self.pipeline.by_message_id.clear()
        if self._owns_mediator:
            await self.mediator.close()
        for mediator in self._pool_mediators:
            await mediator.close()
        _log.info("router stopped")

    # -- configuration --------------------------------------------------------------------------

    async def apply_config(self, config):
        """Bring pools and consumers in line with `config`; returns a summary, or None while
        shutting down. An unchanged config changes nothing."""
        if self._stopping:
            return None
        summary = {"pools_created": 0, "pools_updated": 0, "pools_removed": 0, "queues_started": 0, "queues_stopped": 0}
        wanted = {}
        for pc in config.pools:
            wanted[pc.code] = pc
            pool = self.pools.get(pc.code)
            if pool is not None:
                if pool.config != pc:
                    pool.update(pc)
                    summary["pools_updated"] += 1
                continue
            if self._create_pool(pc) is not None:
                summary["pools_created"] += 1
        for code in list(self.pools):
            if code not in wanted and code != self.settings.default_pool:
                pool = self.pools.pop(code)
                pool.drain()
                self.draining_pools.append(pool)
                summary["pools_removed"] += 1
                _log.info("pool removed: draining", pool=code, queued=pool.queue_size)

        queues = {}
        for qc in config.queues:
            queues[qc.name] = qc
        for name in list(self.consumers):
            loop = self.consumers[name]
            if name not in queues or loop.config != queues[name]:
                await self.remove_consumer(name)
                summary["queues_stopped"] += 1
        for name in queues:
            if name not in self.consumers and self._start_queue(queues[name]):
                summary["queues_started"] += 1
        self.config = config
        self._warned = {}
        return summary

    def _create_pool(self, pc):
        total = len(self.pools)
        if total >= MAX_POOLS:
            self.warn_throttled("max-pools", w.POOL_HEALTH, "CRITICAL", "Pool limit %d reached: pool %s not created" % (MAX_POOLS, pc.code))
            return None
        if total + 1 >= POOL_WARNING_THRESHOLD:
            self.warn_throttled("many-pools", w.POOL_HEALTH, "WARN", "%d pools configured (limit %d)" % (total + 1, MAX_POOLS))
        for pool in self.draining_pools:
            if pool.code == pc.code:  # re-added while still draining: take it back
                self.draining_pools.remove(pool)
                pool.running = True
                pool.update(pc)
                self.pools[pc.code] = pool
                return pool
        mediator = self.mediator
        if self.mediator_factory is not None:
            mediator = self.mediator_factory(pc)
            self._pool_mediators.append(mediator)
        pool = ProcessPool(pc, mediator, self.breakers, self, self.clock, self.settings.max_samples, self.settings.cascade_delay)
        self.pools[pc.code] = pool
        _log.info("pool created", pool=pc.code, concurrency=pool.concurrency, rateLimitPerMinute=pc.rate_limit_per_minute)
        return pool

    def set_pool(self, pc):
        """Resize a pool in place, or create it (the API's `PUT /monitoring/pools/{code}`).
        An existing pool keeps its queued and in-flight work (RS recreated it, spec §14 #11);
        a draining pool of that code is taken back. `config` shows the change, so a later
        `apply_config` treats the pool like any other: a platform config that leaves it out
        drains it. Returns the pool, or None while stopping or at the pool limit."""
        if self._stopping:
            return None
        pool = self.pools.get(pc.code)
        if pool is not None:
            pool.update(pc)
            _log.info("pool resized", pool=pc.code, concurrency=pool.concurrency, rateLimitPerMinute=pc.rate_limit_per_minute)
        else:
            pool = self._create_pool(pc)
            if pool is None:
                return None
        pools = [pc if p.code == pc.code else p for p in self.config.pools]
        if self.config.pool(pc.code) is None:
            pools.append(pc)
        # a new object: whoever holds the old one (a config sync's last applied) keeps it
        self.config = RouterConfig(pools, self.config.queues, self.config.connections)
        return pool

    def _start_queue(self, qc):
        if self.consumer_factory is None:
            _log.error("no consumer factory: queue not started", queue=qc.name)
            return False
        try:
            consumer = self.consumer_factory(qc)
        except Exception as e:  # a bad queue URI must not stop the others
            self.warnings.add(w.CONFIGURATION, "ERROR", "Queue %s not started: %s" % (qc.name, e), "Router")
            _log.error("queue not started", queue=qc.name, uri=qc.uri, error=str(e))
            return False
        self.add_consumer(consumer, qc, qc.name)
        return True

    def add_consumer(self, consumer, config=None, name=None):
        """Start polling `consumer` (also usable without a config, e.g. from code)."""
        name = name or consumer.identifier
        if name in self.consumers:
            raise ValueError("a consumer named %r is already running" % name)
        loop = ConsumerLoop(name, consumer, config, self.clock())
        self.consumers[name] = loop
        self._start_polling(loop)
        _log.info("consumer started", queue=name)
        return loop

    def _start_polling(self, loop):
        if self.running and self.polling and not loop.stopped and (loop.task is None or loop.task.done()):
            loop.heartbeat = self.clock()
            loop.task = create_task(self._poll_loop(loop))

    async def pause_polling(self):
        """Stop polling every consumer (an instance on standby); deliveries in flight finish and
        are answered as usual. A batch being routed is routed first (cancelling it would strand
        its messages until their visibility timeout); a waiting poll is cancelled.
        `resume_polling()` starts again."""
        self.polling = False
        for loop in list(self.consumers.values()):
            task = loop.task
            if task is not None and not task.done():
                if not loop.routing:
                    task.cancel()
                try:
                    await task
                except BaseException:  # CancelledError, or what the loop died of
                    pass
        _log.info("polling paused")

    def resume_polling(self):
        self.polling = True
        for loop in list(self.consumers.values()):
            self._start_polling(loop)
        _log.info("polling resumed")

    async def remove_consumer(self, name):
        loop = self.consumers.pop(name, None)
        if loop is not None:
            await self._stop_loop(loop)
            _log.info("consumer stopped", queue=name)

    async def _stop_loop(self, loop):
        loop.stopped = True
        try:
            await loop.consumer.stop()
        except Exception as e:
            _log.warn("consumer stop failed", queue=loop.name, error=repr(e))
        task = loop.task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except BaseException:  # CancelledError, or what the loop died of
                pass

    # -- polling --------------------------------------------------------------------------------

    def has_room_for_a_batch(self):
        """Some pool can take a whole poll batch (a pool that cannot would defer it)."""
        if not self.pools:
            return True  # DEFAULT-POOL is created on first use
        need = self.settings.poll_batch_size
        for pool in self.pools.values():
            if pool.available_capacity() >= need:
                return True
        return False

    async def _wait_for_room(self):
        """Wait until a pool has room for a batch: woken by the pool as its queue drains, so
        a full router resumes polling at once; `capacity_wait` only bounds the wait."""
        self._awaiting_room = True
        self._room.clear()
        try:
            await with_timeout(self._room.wait(), self.settings.capacity_wait)
        except asyncio.TimeoutError:
            pass

    async def _poll_loop(self, loop):
        consumer = loop.consumer
        s = self.settings
        cheap = getattr(consumer, "wakes_on_publish", False)
        while self.running and self.polling and not loop.stopped:
            loop.heartbeat = self.clock()
            if not self.has_room_for_a_batch():
                await self._wait_for_room()
                continue
            try:
                messages = await consumer.poll(s.poll_batch_size)
            except ConsumerStopped:
                break
            except Exception as e:  # a broker hiccup: report and try again
                self.metrics.consumer_error(loop.name, type(e).__name__)
                _log.error("poll failed", queue=loop.name, error=repr(e))
                await sleep(s.error_wait)
                continue
            loop.last_poll = loop.heartbeat = self.clock()
            self.metrics.consumer_polled(loop.name, len(messages))
            if messages:
                loop.routing = True
                try:
                    await self.route_batch(consumer, messages)
                finally:
                    loop.routing = False
            if cheap:
                continue
            if not messages:
                await sleep(s.empty_wait)
            elif len(messages) < s.poll_batch_size:
                await sleep(s.partial_wait)

    # -- routing --------------------------------------------------------------------------------

    async def route_batch(self, consumer, messages):
        if not self.running:
            await _gather([consumer.nack(m.receipt_handle, None, "router shutting down") for m in messages])
            return
        batch_id = self._batch_counter
        self._batch_counter += 1
        now = self.clock()
        wall_now = wall_time()
        answers = []  # broker calls to make once everything is submitted

        by_pool = {}
        pool_order = []
        for queued in messages:
            broker_id = queued.broker_message_id
            if broker_id and self.pipeline.take_pending_delete(broker_id):
                answers.append(self._answer(consumer, queued, ACK, None, "already processed"))
                continue
            verdict = self.pipeline.check(queued, now)
            if verdict == REQUEUE:
                answers.append(self._answer(consumer, queued, ACK, None, "duplicate of a message in flight"))
                continue
            if verdict != NEW:
                continue
            pool = self._pool_for(queued.message)
            if pool.code not in by_pool:
                by_pool[pool.code] = []
                pool_order.append(pool)
            by_pool[pool.code].append(queued)
            # Tracked now, so a second copy later in this batch is recognised (spec §13 #27).
            self.pipeline.track(queued, pool.code, batch_id, now, wall_now)

        for pool in pool_order:
            share = by_pool[pool.code]
            if pool.available_capacity() < len(share):
                self.warn_throttled(
                    "full:" + pool.code,
                    w.QUEUE_HEALTH,
                    "WARN",
                    "Pool %s is full (%d queued): deferring %d messages" % (pool.code, pool.queue_size, len(share)),
                )
                for queued in share:
                    answers.append(self._answer_tracked(consumer, queued, DEFER, self.settings.full_pool_defer))
                continue
            refused_groups = {}
            for queued in share:
                message = queued.message
                if message.ordered and message.group in refused_groups:
                    answers.append(self._answer_tracked(consumer, queued, DEFER, self.settings.full_pool_defer))
                    continue
                callback = MessageCallback(message, batch_id, self._resolver(consumer, pipeline_key(queued)))
                refused = pool.submit(callback)
                if refused is not None:
                    self.metrics.rejected(pool.code, refused)
                    refused_groups[message.group] = True
                    answers.append(self._answer_tracked(consumer, queued, DEFER, self.settings.full_pool_defer))
                else:
                    self.metrics.submitted(pool.code)
        if answers:
            await _gather(answers)

    def _pool_for(self, message):
        default = self.settings.default_pool
        code = message.pool_code or default
        pool = self.pools.get(code)
        if pool is not None:
            return pool
        if code != default:
            self.warn_throttled(
                "route:" + code,
                w.ROUTING,
                "WARN",
                "No pool found for code [%s] on message [%s] — routed to %s" % (code, message.id, default),
            )
        pool = self.pools.get(default)
        if pool is None:
            pool = self._create_pool(PoolConfig(default, DEFAULT_POOL_CONCURRENCY))
        return pool

    async def _answer(self, consumer, queued, action, delay, why):
        """Answer a copy that never entered the pipeline."""
        try:
            if action == ACK:
                await consumer.ack(queued.receipt_handle)
            else:
                await consumer.defer(queued.receipt_handle, delay)
            self.metrics.answered(consumer.identifier, action)
            _log.debug("copy answered without delivery", messageId=queued.message.id, action=action, why=why)
        except Exception as e:
            _log.warn("answer failed", messageId=queued.message.id, action=action, error=repr(e))

    def _answer_tracked(self, consumer, queued, action, delay):
        return self._resolve(consumer, pipeline_key(queued), action, delay, None)

    def _resolver(self, consumer, key):
        async def resolve(action, delay, reason):
            await self._resolve(consumer, key, action, delay, reason)

        return resolve

    async def _resolve(self, consumer, key, action, delay, reason):
        try:
            entry = self.pipeline.entries.get(key)
            if entry is None:
                _log.error("%s skipped: message no longer tracked (reaped)" % action, key=key)
                return
            try:
                if action == ACK:
                    await consumer.ack(entry.receipt_handle)
                elif action == NACK:
                    await consumer.nack(entry.receipt_handle, delay, reason)
                else:
                    await consumer.defer(entry.receipt_handle, delay)
                self.metrics.answered(consumer.identifier, action)
            except Exception as e:
                _log.warn("%s failed" % action, messageId=entry.message_id, queue=consumer.identifier, error=repr(e))
                if action == ACK and entry.broker_message_id:
                    self.pipeline.remember_failed_ack(entry.broker_message_id, self.clock())
        finally:
            self.pipeline.release(key)

    # -- pool observer --------------------------------------------------------------------------

    def delivered(self, pool, message, outcome, seconds):
        self.metrics.delivered(pool.code, message, outcome, seconds)
        if outcome.warning:
            self.warnings.add(
                w.CONFIGURATION,
                outcome.warning,
                "%s for message %s: Target: %s" % (outcome.message, message.id, message.mediation_target),
                "HttpMediator",
            )
        if outcome.result == classify.ERROR_CONFIG:
            _log.warn(
                "target refused the message: dropped, not retried",
                messageId=message.id,
                pool=pool.code,
                group=message.message_group_id,
                status=outcome.status,
                target=message.mediation_target,
            )
        elif not outcome.acked:
            _log.info(
                "delivery not acknowledged",
                messageId=message.id,
                pool=pool.code,
                group=message.message_group_id,
                result=outcome.result,
                status=outcome.status,
                retryIn=outcome.nack_delay,
                detail=outcome.message,
            )

    def rate_limited(self, pool):
        self.metrics.rate_limited(pool.code)

    def capacity_freed(self, pool):
        if self._awaiting_room and pool.available_capacity() >= self.settings.poll_batch_size:
            self._awaiting_room = False
            self._room.set()

    # -- warnings -------------------------------------------------------------------------------

    def warn_throttled(self, key, category, severity, message, interval=60.0):
        """Add a warning unless the same `key` warned within `interval` seconds."""
        now = self.clock()
        last = self._warned.get(key)
        if last is not None and now - last < interval:
            return
        self._warned[key] = now
        self.warnings.add(category, severity, message, "Router")
        _log.warn(message)

    # -- housekeeping ---------------------------------------------------------------------------

    async def _housekeeping_loop(self):
        while self.running:
            await sleep(self.settings.housekeeping_interval)
            try:
                await self.housekeeping()
            except Exception as e:  # housekeeping must never die
                _log.error("housekeeping failed", error=repr(e))

    def _due(self, job, interval, now):
        last = self._last_jobs.get(job)
        if last is None:
            self._last_jobs[job] = now  # first tick only starts the clock
            return False
        if now - last >= interval:
            self._last_jobs[job] = now
            return True
        return False

    async def housekeeping(self, now=None):
        s = self.settings
        now = self.clock() if now is None else now
        for pool in [p for p in self.draining_pools if p.is_idle()]:
            self.draining_pools.remove(pool)
            if pool.mediator in self._pool_mediators and pool.mediator not in [p.mediator for p in self.pools.values()]:
                self._pool_mediators.remove(pool.mediator)
                await pool.mediator.close()  # its own client: nothing else uses it
        if self._due("pipeline", 60.0, now):
            for entry in self.pipeline.reap(now, s.pipeline_max_age):
                _log.warn("reaped stale in-pipeline entry", messageId=entry.message_id, pool=entry.pool_code)
            self.pipeline.expire_pending_deletes(now, s.pending_delete_ttl)
            if len(self.pipeline) > s.pipeline_warning_size:
                self.warn_throttled("pipeline-size", w.RESOURCE, "ERROR", "%d messages in the pipeline" % len(self.pipeline))
        if self._due("breakers", s.breaker_eviction_interval, now):
            self.breakers.evict_idle()
            self.warnings.cleanup()
        if self._due("consumers", 30.0, now):
            await self._restart_stalled(now)
        if self._due("queue-metrics", 15.0, now):
            await self.queue_metrics()

    def is_stalled(self, loop, now=None):
        """A poll loop that should be polling and has not made progress for consumer_stall."""
        now = self.clock() if now is None else now
        return self.polling and not loop.stopped and now - loop.heartbeat >= self.settings.consumer_stall

    async def _restart_stalled(self, now):
        if not self.polling:
            return  # paused on purpose
        for loop in list(self.consumers.values()):
            if not self.is_stalled(loop, now) and not (loop.task is not None and loop.task.done()):
                continue
            loop.restarts += 1
            severity = "CRITICAL" if loop.restarts >= 10 else "WARN"
            self.warnings.add(w.CONSUMER_HEALTH, severity, "Consumer %s stalled: restarting its poll loop (restart %d)" % (loop.name, loop.restarts), "Router")
            _log.warn("restarting stalled poll loop", queue=loop.name, restarts=loop.restarts)
            if loop.task is not None and not loop.task.done():
                loop.task.cancel()
            loop.heartbeat = self.clock()
            loop.task = create_task(self._poll_loop(loop))

    # -- reporting ------------------------------------------------------------------------------

    async def queue_metrics(self):
        """Live broker metrics per consumer: {name: {"pending":.., "in_flight":.., ...}}."""
        out = {}
        for loop in list(self.consumers.values()):
            try:
                loop.metrics = await loop.consumer.metrics()
            except Exception as e:
                _log.warn("queue metrics failed", queue=loop.name, error=repr(e))
            out[loop.name] = loop.metrics
        return out

    def pool_stats(self):
        now = wall_time()
        return [p.stats(now) for p in self._all_pools()]

    def _all_pools(self):
        return list(self.pools.values()) + self.draining_pools

    def in_flight(self, limit=100, message_id=None, pool_code=None):
        now = self.clock()
        entries = sorted(self.pipeline.entries.values(), key=lambda e: e.started_at)
        out = []
        needle = message_id.lower() if message_id else None
        for e in entries:
            if needle and needle not in e.message_id.lower():
                continue
            if pool_code and e.pool_code.lower() != pool_code.lower():
                continue
            out.append(
                {
                    "messageId": e.message_id,
                    "brokerMessageId": e.broker_message_id,
                    "queueId": e.queue_identifier,
                    "poolCode": e.pool_code,
                    "elapsedTimeMs": int((now - e.started_at) * 1000),
                    "addedToInPipelineAt": e.wall_started_at,
                }
            )
            if len(out) >= limit:
                break
        return out

    def health(self):
        now = self.clock()
        wall = wall_time()
        pools = []
        for pool in self.pools.values():
            rate, samples = pool.metrics.recent_success(1800, wall)
            pools.append((pool.code, rate, samples))
        consumers = [(loop.name, self.is_stalled(loop, now)) for loop in self.consumers.values()]
        return health_report(pools, consumers, self.warnings.active(), self.settings.health)

    def is_idle(self):
        """Nothing in the pipeline and no pool has work (used to wait for a quiet router)."""
        return not len(self.pipeline) and all(p.is_idle() for p in self._all_pools())


async def _gather(coros):
    if len(coros) == 1:
        await coros[0]
    else:
        await asyncio.gather(*coros)
