"""What every route module of the edge API shares: JSON responses, the one error shape, request
parsing helpers, and `route`, which registers a handler so that nothing it raises escapes.

Errors are `{"error": "<code>", "message": "<text>"}` unless a FlowCatalyst route defines its
own shape (router spec §9.2), in which case that shape is kept and `message` is added.
A handler raises `ApiError` to answer with an error; any other exception is logged (JSON,
with the traceback) and answered with 500 `internal_error`.
"""

import traceback
from urllib.parse import unquote

from microdot import Response

from flowcatalyst.core import jsoncodec
from flowcatalyst.core.log import logger

JSON = "application/json"

_log = logger("api")


def json_response(data, status=200, headers=None):
    out = {"Content-Type": JSON}
    if headers:
        out.update(headers)
    return Response(jsoncodec.dumps(data), status, out)


def error_body(code, message, extra):
    body = {"error": code, "message": message}
    body.update(extra)
    return body


def error_response(status, code, message, headers=None, **extra):
    return json_response(error_body(code, message, extra), status, headers)


class ApiError(Exception):
    """Answer the request with `status` and `{"error": code, "message": message, **extra}`
    (the platform's PlatformError is one too, with its own codes)."""

    def __init__(self, status, code, message, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self):
        return error_body(self.code, self.message, self.extra)

    def response(self):
        return json_response(self.body(), self.status)


def bad_request(message, **extra):
    return ApiError(400, "bad_request", message, **extra)


def route(app, pattern, methods=("GET",)):
    """Register an async handler for `pattern`; ApiError becomes its response, any other
    exception a logged 500. Returns the handler unchanged."""

    def decorate(handler):
        async def guarded(req, **args):
            try:
                return await handler(req, **args)
            except ApiError as e:
                return e.response()
            except Exception as e:
                _log.error(
                    "request failed",
                    method=req.method,
                    path=req.path,
                    error=repr(e),
                    traceback="".join(traceback.format_exception(type(e), e, e.__traceback__)),
                )
                return error_response(500, "internal_error", "the request failed (%s); the server log has the details" % type(e).__name__)

        guarded.__name__ = handler.__name__
        app.route(pattern, methods=list(methods))(guarded)
        return handler

    return decorate


def read_json(req, required=True):
    """The request body as JSON; ApiError 400 when it is not JSON (or absent and required).
    An absent body gives None when not required."""
    body = req.body or b""
    if not body.strip():
        if required:
            raise bad_request("the request needs a JSON body")
        return None
    try:
        return jsoncodec.loads(body)
    except (ValueError, UnicodeError) as e:
        raise ApiError(400, "invalid_json", "the body is not valid JSON: %s" % e) from None


def read_object(req, required=True):
    """The request body as a JSON object (None when absent and not required)."""
    data = read_json(req, required)
    if data is not None and not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data


def int_arg(req, name, default, minimum=None, maximum=None):
    """An integer query parameter; ApiError 400 names it when it is not one or out of range."""
    raw = req.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request("query parameter %s must be an integer, got %r" % (name, raw)) from None
    if minimum is not None and value < minimum:
        raise bad_request("query parameter %s must be >= %d, got %d" % (name, minimum, value))
    if maximum is not None and value > maximum:
        raise bad_request("query parameter %s must be <= %d, got %d" % (name, maximum, value))
    return value


def bool_arg(req, name, default=False):
    raw = req.args.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise bad_request("query parameter %s must be true or false, got %r" % (name, raw))


def path_arg(value):
    """A path segment as sent, percent-decoded (microdot leaves the path encoded)."""
    return unquote(value)


def queue_or_404(edge, name):
    """The queue consumer named `name` (default: the first configured queue)."""
    queues = edge.queues
    if name is None or name == "":
        name = edge.default_queue_name
        if name is None:
            raise ApiError(503, "no_queue", "no queue is configured")
        if name not in queues:
            raise ApiError(503, "no_queue", "the default queue %r is not running (see /monitoring/warnings)" % name)
    queue = queues.get(name)
    if queue is None:
        raise ApiError(404, "unknown_queue", "no queue named %r (queues: %s)" % (name, ", ".join(sorted(queues)) or "none"))
    return name, queue
