"""The router's Prometheus metrics: the set the Go router established as the contract (router
spec §9.3), plus submitted/rejected/poll counters it lists as missing. Counters move on the hot
path; gauges are read from live state when scraped."""

from .breaker import OPEN
from .callback import ACK, NACK
from .classify import ACKED_RESULTS, BREAKER_RECORD
from .metrics import MetricsRegistry

_OUTCOME_LABEL = {ACK: "acked", NACK: "nacked"}


class RouterMetrics:
    def __init__(self, router, registry=None):
        self.router = router
        r = self.registry = MetricsRegistry() if registry is None else registry
        self.processed = r.counter("fc_messages_processed_total", "Messages delivered, by outcome", ("pool", "success", "result"))
        self.duration = r.histogram("fc_mediation_duration_seconds", "Time spent mediating one message", ("pool",))
        self.limited = r.counter("fc_rate_limit_exceeded_total", "Deliveries that waited for the pool rate limit", ("pool",))
        self.submitted_total = r.counter("fc_messages_submitted_total", "Messages accepted by a pool", ("pool",))
        self.rejected_total = r.counter("fc_messages_rejected_total", "Messages a pool refused", ("pool", "reason"))
        self.polls = r.counter("fc_consumer_polls_total", "Polls completed", ("consumer",))
        self.received = r.counter("fc_consumer_messages_received_total", "Messages received", ("consumer",))
        self.errors = r.counter("fc_consumer_errors_total", "Failed polls", ("consumer", "type"))
        self.answers = r.counter("fc_queue_messages_total", "Queue answers", ("queue", "outcome"))
        self.breaker_calls = r.counter("fc_circuit_breaker_calls_total", "Outcomes recorded by circuit breakers", ("target", "outcome"))
        self.queue_size = r.gauge("fc_pool_queue_size", "Messages waiting for a worker", ("pool",))
        self.active = r.gauge("fc_pool_active_workers", "Deliveries in progress", ("pool",))
        self.groups = r.gauge("fc_pool_message_groups", "Message groups with work", ("pool",))
        self.concurrency = r.gauge("fc_pool_concurrency", "Configured concurrency", ("pool",))
        self.in_pipeline = r.gauge("fc_in_pipeline_messages", "Messages being worked on")
        self.pending = r.gauge("fc_queue_pending_messages", "Messages waiting in the queue", ("queue",))
        self.in_flight = r.gauge("fc_queue_in_flight_messages", "Messages received and not yet answered", ("queue",))
        self.breaker_open = r.gauge("fc_circuit_breaker_open", "1 while the breaker of a target is open", ("target",))
        self.warnings_active = r.gauge("fc_warnings_active", "Unacknowledged recent warnings")
        r.add_collector(self._collect)

    # hot path

    def delivered(self, pool, message, outcome, seconds):
        success = outcome.result in ACKED_RESULTS
        self.processed.inc((pool, "true" if success else "false", outcome.result))
        self.duration.observe((pool,), seconds)
        record = BREAKER_RECORD[outcome.result]
        if record is not None:
            self.breaker_calls.inc((message.mediation_target, "success" if record else "failure"))

    def rate_limited(self, pool):
        self.limited.inc((pool,))

    def submitted(self, pool):
        self.submitted_total.inc((pool,))

    def rejected(self, pool, reason):
        self.rejected_total.inc((pool, reason))

    def consumer_polled(self, consumer, count):
        self.polls.inc((consumer,))
        if count:
            self.received.inc((consumer,), count)

    def consumer_error(self, consumer, kind):
        self.errors.inc((consumer, kind))

    def answered(self, queue, action):
        self.answers.inc((queue, _OUTCOME_LABEL.get(action, "deferred")))

    # scrape time

    def _collect(self):
        router = self.router
        for gauge in (self.queue_size, self.active, self.groups, self.concurrency, self.pending, self.in_flight, self.breaker_open):
            gauge.clear()
        for pool in router._all_pools():
            labels = (pool.code,)
            self.queue_size.set(labels, pool.queue_size)
            self.active.set(labels, pool.active_workers)
            self.groups.set(labels, len(pool.groups))
            self.concurrency.set(labels, pool.concurrency)
        self.in_pipeline.set((), len(router.pipeline))
        for loop in router.consumers.values():
            if loop.metrics:
                self.pending.set((loop.name,), loop.metrics.get("pending", 0))
                self.in_flight.set((loop.name,), loop.metrics.get("in_flight", 0))
        for breaker in router.breakers:
            self.breaker_open.set((breaker.name,), 1 if breaker.state == OPEN else 0)
        self.warnings_active.set((), len(router.warnings.active()))

    def render(self):
        return self.registry.render()
