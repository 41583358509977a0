"""The public routes: health probes and Prometheus metrics (router spec §9.2, §9.3).

  GET /health, /q/health                      200 {"status": "UP"|"DEGRADED", "version"}
  GET /health/live, /q/health/live            200 {"status": "LIVE"}
  GET /health/ready, /health/startup,
      /q/health/ready                         200 {"status": "READY"}, or 503
                                              {"status": "NOT_READY"} when a queue is not
                                              healthy or the router is DEGRADED
  GET /metrics, /q/metrics                    Prometheus text

Each readiness probe counts a broker connection attempt and its result in
`flowcatalyst_broker_connection_attempts/successes/failures` and sets
`flowcatalyst_broker_available` (1/0), as RS does.
"""

from microdot import Response

from flowcatalyst.core.health import DEGRADED
from flowcatalyst.core.metrics import CONTENT_TYPE

from .api_common import json_response, route


class BrokerMetrics:
    def __init__(self, registry):
        self.attempts = registry.counter("flowcatalyst_broker_connection_attempts", "Broker checks made by readiness probes")
        self.successes = registry.counter("flowcatalyst_broker_connection_successes", "Readiness broker checks that found every queue healthy")
        self.failures = registry.counter("flowcatalyst_broker_connection_failures", "Readiness broker checks that found a queue unhealthy")
        self.available = registry.gauge("flowcatalyst_broker_available", "1 when the last readiness probe found every queue healthy, else 0")
        for counter in (self.attempts, self.successes, self.failures):
            counter.inc((), 0)  # the series exist from the start

    def record(self, ok):
        self.attempts.inc()
        (self.successes if ok else self.failures).inc()
        self.available.set((), 1 if ok else 0)


def brokers_ok(router):
    for loop in list(router.consumers.values()):
        try:
            if not loop.consumer.is_healthy():
                return False
        except Exception:
            return False
    return True


def register(app, edge):
    router = edge.router
    broker = BrokerMetrics(router.metrics.registry)

    async def health(req):
        status = router.health()["status"]
        return json_response({"status": "DEGRADED" if status == DEGRADED else "UP", "version": edge.version})

    async def live(req):
        return json_response({"status": "LIVE"})

    async def ready(req):
        ok = brokers_ok(router)
        broker.record(ok)
        if not ok or router.health()["status"] == DEGRADED:
            return json_response({"status": "NOT_READY"}, 503)
        return json_response({"status": "READY"})

    async def metrics(req):
        await router.queue_metrics()  # fresh queue gauges
        return Response(router.metrics.render(), 200, {"Content-Type": CONTENT_TYPE})

    for handler, paths in (
        (health, ("/health", "/q/health")),
        (live, ("/health/live", "/q/health/live")),
        (ready, ("/health/ready", "/health/startup", "/q/health/ready")),
        (metrics, ("/metrics", "/q/metrics")),
    ):
        for path in paths:
            route(app, path)(handler)
    return broker
