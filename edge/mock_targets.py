"""Mock delivery targets (router spec §11), so an edge can be tried against itself: seed
messages (`POST /api/seed/messages`) that point here and watch them flow.

Every target route counts the request; `GET /api/test/stats` reads the count and
`POST /api/test/stats/reset` zeroes it. `fast` and `slow` take an optional `?delayMs=` (an
addition: default 100 and 60000) so a run need not wait a minute.
"""

import asyncio
import random

from .api_common import int_arg, json_response, route

SUCCESS = {"status": "success", "ack": True}
MAX_DELAY_MS = 15 * 60 * 1000


class MockTargets:
    def __init__(self):
        self.total_requests = 0

    def reset(self):
        previous, self.total_requests = self.total_requests, 0
        return {"previousCount": previous, "currentCount": 0}


def register(app, edge, rng=None):
    targets = MockTargets()
    rng = rng or random.Random()

    def target(*paths):
        def decorate(handler):
            async def counted(req):
                targets.total_requests += 1
                return await handler(req)

            counted.__name__ = handler.__name__
            for path in paths:
                route(app, path, methods=("POST",))(counted)
            return handler

        return decorate

    async def wait(req, default_ms):
        await asyncio.sleep(int_arg(req, "delayMs", default_ms, 0, MAX_DELAY_MS) / 1000)

    @target("/api/test/fast", "/api/benchmark/process")
    async def fast(req):
        await wait(req, 100)
        return json_response(SUCCESS)

    @target("/api/test/slow", "/api/benchmark/process-slow")
    async def slow(req):
        await wait(req, 60000)
        return json_response(SUCCESS)

    @target("/api/test/faulty")
    async def faulty(req):
        roll = rng.random()
        if roll < 0.6:
            return json_response(SUCCESS)
        if roll < 0.8:
            return json_response({"status": "error", "error": "Client error"}, 400)
        return json_response({"status": "error", "error": "Server error"}, 500)

    @target("/api/test/fail")
    async def fail(req):
        return json_response({"status": "error", "error": "Always fails"}, 500)

    @target("/api/test/success")
    async def success(req):
        return json_response({"ack": True, "message": ""})

    @target("/api/test/pending")
    async def pending(req):
        return json_response({"ack": False, "message": "notBefore time not reached"})

    @target("/api/test/client-error")
    async def client_error(req):
        return json_response({"status": "error", "error": "Record not found"}, 400)

    @target("/api/test/server-error")
    async def server_error(req):
        return json_response({"status": "error", "error": "Internal server error"}, 500)

    async def stats(req):
        return json_response({"totalRequests": targets.total_requests})

    async def reset(req):
        return json_response(targets.reset())

    for path in ("/api/test/stats", "/api/benchmark/stats"):
        route(app, path)(stats)
    for path in ("/api/test/stats", "/api/test/stats/reset", "/api/benchmark/reset"):
        route(app, path, methods=("POST",))(reset)
    return targets
