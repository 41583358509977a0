"""`/monitoring/*` and `/api/config`: the router's state in the FlowCatalyst shapes (router
spec §9.2), snake_case where RS has it. Where RS had a defect this does not copy it (spec §14):
one spelling of HALF_OPEN, breakers that are really the router's, `PUT /monitoring/pools`
resizing the pool in place, `lastPollTimeMs` an epoch time. docs/edge-api.md lists every route.
"""

from flowcatalyst.core import jsoncodec
from flowcatalyst.core.compat import wall_time
from flowcatalyst.core.config import PoolConfig
from flowcatalyst.core.log import logger
from flowcatalyst.core.timefmt import iso_utc_ms

from .api_common import ApiError, bad_request, int_arg, json_response, path_arg, read_object, route
from .queuestats import parse_window

TITLE = {"HEALTHY": "Healthy", "WARNING": "Warning", "DEGRADED": "Degraded"}
NEW_POOL_CONCURRENCY = 10  # PUT for an unknown pool without a concurrency (as RS)
MAX_CHECK_BATCH = 5000

_log = logger("api")


def register(app, edge, history):
    router = edge.router

    # -- overview -------------------------------------------------------------------------------

    @route(app, "/monitoring")
    async def overview(req):
        report = router.health()
        health_report = dict(report)
        health_report["status"] = TITLE[report["status"]]
        return json_response(
            {
                "status": report["status"],
                "version": edge.version,
                "health_report": health_report,
                "pool_stats": router.pool_stats(),
                "active_warnings": report["active_warnings"],
                "critical_warnings": report["critical_warnings"],
            }
        )

    @route(app, "/monitoring/health")
    async def health(req):
        report = router.health()
        now = wall_time()
        return json_response(
            {
                "status": report["status"],
                "timestamp": iso_utc_ms(now),
                "uptimeMillis": int((now - edge.started_at) * 1000),
                "details": {
                    "totalQueues": report["consumers_healthy"] + report["consumers_unhealthy"],
                    "healthyQueues": report["consumers_healthy"],
                    "totalPools": report["pools_healthy"] + report["pools_unhealthy"],
                    "healthyPools": report["pools_healthy"],
                    "activeWarnings": report["active_warnings"],
                    "criticalWarnings": report["critical_warnings"],
                    "circuitBreakersOpen": router.breakers.open_count(),
                    "degradationReason": "; ".join(report["issues"]) or None,
                },
            }
        )

    @route(app, "/api/config")
    async def config(req):
        return json_response(router.config.to_dict())

    # -- pools ----------------------------------------------------------------------------------

    @route(app, "/monitoring/pools")
    async def pools(req):
        return json_response(router.pool_stats())

    @route(app, "/monitoring/pools/<code>", methods=("PUT",))
    async def set_pool(req, code):
        code = path_arg(code)
        body = read_object(req)
        current = _pool_config(router, code)
        concurrency = _int_field(body, "concurrency", current.concurrency if current else NEW_POOL_CONCURRENCY, 0)
        if "rate_limit_per_minute" in body:
            rate = _int_field(body, "rate_limit_per_minute", None, 0)  # null or 0: no limit
        else:
            rate = current.rate_limit_per_minute if current else None
        pc = PoolConfig(code, concurrency, rate)
        pool = router.set_pool(pc)
        if pool is None:
            raise ApiError(503, "pool_not_set", "pool %s was not changed: the router is stopping or at its pool limit" % code, success=False)
        _log.info("pool set through the API", pool=code, concurrency=pool.concurrency, rateLimitPerMinute=pc.rate_limit_per_minute, created=current is None)
        return json_response(
            {
                "success": True,
                "pool_code": code,
                "new_config": {"concurrency": pc.concurrency, "rate_limit_per_minute": pc.rate_limit_per_minute},
            }
        )

    @route(app, "/monitoring/pool-stats")
    async def pool_stats(req):
        window = _window(req)
        out = {}
        for s in router.pool_stats():
            m = s["metrics"]
            if window is None:
                succeeded, failed, limited = m["totalSuccess"], m["totalFailure"], m["totalRateLimited"]
                rate, average = m["successRate"], m["processingTime"]["avgMs"]
            else:
                w = m["last5Min"] if window == 300 else m["last30Min"]
                succeeded, failed, limited = w["successCount"], w["failureCount"], w["rateLimitedCount"]
                rate, average = w["successRate"], w["processingTime"]["avgMs"]
            out[s["pool_code"]] = {
                "poolCode": s["pool_code"],
                "totalProcessed": succeeded + failed,
                "totalSucceeded": succeeded,
                "totalFailed": failed,
                "totalRateLimited": limited,
                "successRate": rate,
                "activeWorkers": s["active_workers"],
                "availablePermits": max(s["concurrency"] - s["active_workers"], 0),
                "maxConcurrency": s["concurrency"],
                "queueSize": s["queue_size"],
                "maxQueueCapacity": s["queue_capacity"],
                "averageProcessingTimeMs": average,
            }
        return json_response(out)

    # -- queues ---------------------------------------------------------------------------------

    @route(app, "/monitoring/queues")
    async def queues(req):
        metrics = await router.queue_metrics()
        out = []
        for name in metrics:
            m = metrics[name] or {}
            out.append(
                {
                    "queue_identifier": name,
                    "pending_messages": m.get("pending", 0),
                    "in_flight_messages": m.get("in_flight", 0),
                    "delayed_messages": m.get("delayed", 0),
                    "dead_letters": m.get("dead_lettered", 0),
                }
            )
        return json_response(out)

    @route(app, "/monitoring/queue-stats")
    async def queue_stats(req):
        window = _window(req)
        metrics = await router.queue_metrics()  # always live: `refresh` changes nothing
        history.snapshot_if_due(edge.queues)
        now = wall_time()
        seconds = window if window is not None else max(now - edge.started_at, 1.0)
        out = {}
        for name, loop in list(router.consumers.items()):
            c = history.counters(name, loop.consumer, window, now)
            m = metrics.get(name) or {}
            acked, nacked = c.get("acked", 0), c.get("nacked", 0)
            pending, in_flight, delayed = m.get("pending", 0), m.get("in_flight", 0), m.get("delayed", 0)
            out[name] = {
                "name": name,
                "totalMessages": c.get("received", 0),
                "totalConsumed": acked,
                "totalFailed": nacked,
                "totalDeferred": c.get("deferred", 0),
                "successRate": acked / (acked + nacked) if acked + nacked else 1.0,
                "currentSize": pending + in_flight + delayed,
                "throughput": round(acked / seconds, 3),
                "pendingMessages": pending,
                "messagesNotVisible": in_flight + delayed,
                "totalPublished": c.get("published", 0),
                "totalDuplicates": c.get("duplicates", 0),
                "totalDeadLettered": c.get("dead_lettered", 0),
                "deadLetters": m.get("dead_lettered", 0),
            }
        return json_response(out)

    @route(app, "/monitoring/broker-stats/refresh", methods=("POST",))
    async def refresh(req):
        await router.queue_metrics()
        return json_response({"refreshed": True, "ageSeconds": 0})

    @route(app, "/monitoring/consumer-health")
    async def consumer_health(req):
        now = wall_time()
        mono = router.clock()
        instance = edge.instance_id
        consumers = {}
        for name, loop in list(router.consumers.items()):
            if loop.last_poll is None:
                last_ms = since_ms = -1
                last = "never"
            else:
                since = mono - loop.last_poll
                last_ms = int((now - since) * 1000)
                since_ms = int(since * 1000)
                last = iso_utc_ms(now - since)
            stalled = router.is_stalled(loop, mono)
            running = not loop.stopped and loop.task is not None and not loop.task.done()
            consumers[name] = {
                "mapKey": name,
                "queueIdentifier": name,
                "consumerQueueIdentifier": loop.consumer.identifier,
                "instanceId": instance,
                "isHealthy": bool(loop.consumer.is_healthy()) and not stalled and (running or not router.polling),
                "lastPollTimeMs": last_ms,
                "lastPollTime": last,
                "timeSinceLastPollMs": since_ms,
                "timeSinceLastPollSeconds": since_ms // 1000 if since_ms >= 0 else -1,
                "isRunning": running,
                "restarts": loop.restarts,
            }
        return json_response({"currentTimeMs": int(now * 1000), "currentTime": iso_utc_ms(now), "consumers": consumers})

    @route(app, "/monitoring/standby-status")
    async def standby_status(req):
        return json_response(edge.standby_status())  # RouterApp: the primary; the server: its lock

    # -- circuit breakers -----------------------------------------------------------------------

    @route(app, "/monitoring/circuit-breakers")
    async def breakers(req):
        return json_response(router.breakers.stats())

    @route(app, "/monitoring/circuit-breakers/reset-all", methods=("POST",))
    async def reset_all(req):
        router.breakers.reset_all()
        _log.info("all circuit breakers reset through the API")
        return json_response({"status": "success"})

    @route(app, "/monitoring/circuit-breakers/<path:name>/state")
    async def breaker_state(req, name):
        breaker = _breaker(router, name)
        return json_response({"name": breaker.name, "state": breaker.state})

    @route(app, "/monitoring/circuit-breakers/<path:name>/reset", methods=("POST",))
    async def breaker_reset(req, name):
        breaker = _breaker(router, name)
        breaker.reset()
        _log.info("circuit breaker reset through the API", target=breaker.name)
        return json_response({"status": "success"})

    # -- in flight ------------------------------------------------------------------------------

    @route(app, "/monitoring/in-flight-messages")
    async def in_flight(req):
        limit = int_arg(req, "limit", 100, 1, 100000)
        items = router.in_flight(limit, req.args.get("messageId") or None, req.args.get("poolCode") or None)
        return json_response([_in_flight_item(i) for i in items])

    @route(app, "/monitoring/in-flight-messages/check")
    async def in_flight_check(req):
        message_id = req.args.get("messageId")
        if not message_id:
            raise bad_request("query parameter messageId is required")
        out = {"messageId": message_id, "inPipeline": message_id in router.pipeline.by_message_id}
        if out["inPipeline"]:
            for item in router.in_flight(len(router.pipeline), message_id):
                if item["messageId"] == message_id:
                    out["detail"] = _in_flight_item(item)
                    break
        return json_response(out)

    @route(app, "/monitoring/in-flight-messages/check-batch", methods=("POST",))
    async def in_flight_check_batch(req):
        body = read_object(req)
        ids = body.get("messageIds")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise bad_request("messageIds must be an array of strings")
        if len(ids) > MAX_CHECK_BATCH:
            raise bad_request("at most %d messageIds per request, got %d" % (MAX_CHECK_BATCH, len(ids)))
        tracked = router.pipeline.by_message_id
        return json_response({i: i in tracked for i in ids})


def _window(req):
    try:
        return parse_window(req.args.get("time_window"))
    except ValueError as e:
        raise bad_request(str(e)) from None


def _pool_config(router, code):
    pool = router.pools.get(code)
    if pool is None:
        for p in router.draining_pools:
            if p.code == code:
                pool = p
    return pool.config if pool is not None else None


def _int_field(body, key, default, minimum):
    if key not in body:
        return default
    value = body[key]
    if value is None:
        return default
    if isinstance(value, float) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad_request("%s must be an integer >= %d, got %s" % (key, minimum, _show(value)), success=False)
    return value


def _show(value):
    return jsoncodec.dumps(value)


def _breaker(router, name):
    name = path_arg(name)
    breaker = router.breakers.find(name)
    if breaker is None:
        raise ApiError(404, "Circuit breaker not found", "no circuit breaker for %r" % name)
    return breaker


def _in_flight_item(item):
    out = dict(item)
    out["addedToInPipelineAt"] = iso_utc_ms(item["addedToInPipelineAt"])
    return out
