"""The edge's HTTP API: a microdot app assembled from small route modules.

  api_health       /health*, /metrics (public)
  api_monitoring   /monitoring/* (pools, queues, statistics, breakers, in flight), /api/config
  api_warnings     /monitoring/warnings*, /warnings*
  api_publish      POST /api/messages, POST /messages, POST /api/seed/messages
  api_deadletters  /api/dead-letters*
  mock_targets     /api/test/*, /api/benchmark/* (targets for trying the edge on itself)
  activity         /monitoring/activity (delivery history and oldest pending ages, for the dashboard)
  dashboard        /dashboard, /dashboard.html, /monitoring/dashboard
  auth             AUTH_MODE NONE | BASIC | TOKEN for everything but health and metrics

Everything answers JSON; errors are `{"error": code, "message": text}` (401 for BASIC is RS's
plain `Unauthorized`): unknown path 404, wrong method 405 (with `Allow`), body over
`MAX_BODY` 413, a handler that fails 500 (logged with its traceback; the server goes on).
docs/edge-api.md describes every route.
"""

import asyncio

import microdot.microdot as microdot_core
from microdot import Microdot, Request

from flowcatalyst.core.compat import monotonic
from flowcatalyst.core.log import logger

from . import (
    activity,
    api_deadletters,
    api_health,
    api_monitoring,
    api_publish,
    api_warnings,
    mock_targets,
)
from .api_common import error_response
from .auth import Auth
from .dashboard import register_dashboard
from .queuestats import QueueHistory

MAX_BODY = 10 * 1024 * 1024  # 1000 pointers with payloads fit
MAX_LINE = 8 * 1024  # request line and each header line

_log = logger("api")


def configure_microdot():
    """microdot keeps its limits on the Request class, for the whole process (default 16 KB
    bodies, 2 KB lines), and prints a traceback for a request it cannot parse: make that a
    JSON log line. (Handler errors never get there: `route` catches them.)"""
    Request.max_content_length = MAX_BODY
    Request.max_body_length = MAX_BODY
    Request.max_readline = MAX_LINE
    microdot_core.print_exception = _unreadable_request


def _unreadable_request(exc):
    _log.warn("unreadable HTTP request", error=repr(exc))


def create_api(edge, auth=None):
    """The API of a RouterApp, as a microdot app (the caller serves it). Also starts the queue
    counter and delivery histories when called inside a running event loop (EdgeApp.start
    does). `auth`: an object whose `check(req)` (plain or async) returns None or a refusal;
    default: AUTH_MODE's (auth.py)."""
    app = new_api(Auth(edge.settings) if auth is None else auth)
    register_router_routes(app, edge)
    return app


def new_api(auth):
    """A microdot app with the hooks every API of ours has: authentication before each route,
    a log line after, JSON errors for what no route answers."""
    configure_microdot()
    app = Microdot()
    app.options_handler = None  # OPTIONS is answered like any other method: after auth, 405

    @app.before_request
    async def authenticate(req):
        req.g.started = monotonic()
        return await _checked(auth, req)

    @app.after_request
    async def log_request(req, res):
        _log.debug("request", method=req.method, path=req.path, status=res.status_code, ms=round((monotonic() - req.g.started) * 1000, 1))
        return res

    _error_handlers(app, auth)
    return app


async def _checked(auth, req):
    result = auth.check(req)
    if hasattr(result, "__await__"):
        result = await result
    return result


def register_router_routes(app, edge):
    """The router's routes (health, metrics, monitoring, publishing, dead letters, mock
    targets, activity, dashboard) for `edge`, a RouterApp."""
    history = QueueHistory()
    deliveries = activity.DeliveryHistory()
    api_health.register(app, edge)
    api_monitoring.register(app, edge, history)
    api_warnings.register(app, edge)
    api_publish.register(app, edge)
    api_deadletters.register(app, edge)
    app.mock_targets = mock_targets.register(app, edge)
    activity.register(app, edge, deliveries)
    register_dashboard(app, edge)

    app.queue_history = history
    app.delivery_history = deliveries
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:  # one task, so that EdgeApp.stop cancelling it stops both
        app.queue_history_task = loop.create_task(_sample(edge, history, deliveries))
    return app


async def _sample(edge, *histories):
    await asyncio.gather(*(h.run(edge) for h in histories))


def _error_handlers(app, auth):
    def allowed(path):
        methods = []
        for route_methods, pattern, _, _, _ in app.url_map:
            if pattern.match(path) is not None:
                methods.extend(m for m in route_methods if m not in methods)
        return methods

    @app.errorhandler(400)
    async def bad_request(req):
        return error_response(400, "bad_request", "the request could not be read as HTTP")

    @app.errorhandler(404)
    async def not_found(req):
        denied = await _checked(auth, req)  # protected paths do not reveal what exists
        if denied is not None:
            return denied
        return error_response(404, "not_found", "no route %s %s" % (req.method, req.path))

    @app.errorhandler(405)
    async def wrong_method(req):
        denied = await _checked(auth, req)
        if denied is not None:
            return denied
        methods = allowed(req.path)
        return error_response(
            405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)" % (req.method, req.path, ", ".join(methods)), {"Allow": ", ".join(methods)}
        )

    @app.errorhandler(413)
    async def too_large(req):
        return error_response(413, "payload_too_large", "the body is larger than %d bytes" % MAX_BODY, {"Connection": "close"})

    @app.errorhandler(500)
    async def internal(req):
        return error_response(500, "internal_error", "the request failed; the server log has the details")
