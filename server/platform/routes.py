"""How the platform's API modules register routes: `platform_route` puts a handler on the
microdot app and records what the OpenAPI document (openapi.py) says about it, so the two
cannot drift apart.

    @platform_route(api, "GET", "/api/subscriptions/{id}", tag="Subscriptions",
                    summary="One subscription", permission="platform:messaging:subscription:view",
                    responses={200: "Subscription", 404: "Error"})
    async def get_subscription(req, principal, id):
        ...
        return subscription_json(row)            # 200 with this JSON

A handler gets the request, the caller's Principal (principal.py; set by the server's auth
before any route runs) and the path parameters, percent-decoded. It returns a dict or list
(200 JSON), `Reply(status, body, headers)`, or None (204). It raises PlatformError for the
error envelope of spec §3.1; IntegrityError becomes 409 CONFLICT, StoreError 503
STORE_UNAVAILABLE, anything else a logged 500 INTERNAL_ERROR.

List routes share `list_filters` (query filters and the caller's client scope as SQL) and
`list_page` (a newest-first page with an opaque cursor to the next).

Route modules are `register(api, platform)` functions; `platform` (app.py) has `store`,
`settings`, `metrics` (the MetricsRegistry), `signals` (wake the stream processor or the
scheduler: `platform.signals.wake("stream")`) and `await platform.pools_changed()`.
Component schemas for the OpenAPI document live in each module's `SCHEMAS` dict.
"""

import base64
import json
import re
import traceback
from urllib.parse import unquote, urlencode

from microdot import Response

from flowcatalyst.core import jsoncodec
from flowcatalyst.core.log import logger

from .errors import PlatformError, unauthorized, validation
from .store import IntegrityError, StoreError, marks

BEARER = "bearer"  # a JWT or service token (the server's auth)
PUBLIC = "public"  # no credentials
DISPATCH = "dispatch"  # the dispatch callback's own HMAC token (dispatchauth.py)

_log = logger("api")


class Reply:
    def __init__(self, status, body=None, headers=None):
        self.status = status
        self.body = body
        self.headers = headers or {}


class RouteInfo:
    """What the OpenAPI document says about one route."""

    def __init__(
        self, method, path, summary, tag, permission, body, responses, query, auth, description
    ):
        self.method = method
        self.path = path
        self.summary = summary
        self.tag = tag
        self.permission = permission
        self.body = body
        self.responses = responses or {}
        self.query = query or ()
        self.auth = auth
        self.description = description


def json_reply(body, status=200, headers=None):
    out = {"Content-Type": "application/json"}
    if headers:
        out.update(headers)
    return Response(jsoncodec.dumps(body), status, out)


def error_reply(error):
    return json_reply(error.body(), error.status)


def _response(result):
    if result is None:
        return Response(b"", 204)
    if isinstance(result, Reply):
        if result.body is None:
            return Response(b"", result.status, result.headers)
        return json_reply(result.body, result.status, result.headers)
    return json_reply(result)


def platform_route(
    api,
    method,
    path,
    summary,
    tag,
    permission=None,
    body=None,
    responses=None,
    query=(),
    auth=BEARER,
    description=None,
):
    """Register `handler(req, principal, **path_params)` for `method path` (path in OpenAPI
    form, `{id}`). `permission`: one permission or a tuple of which any one will do.
    `query`: (name, type, description) of the query parameters."""
    permissions = (permission,) if isinstance(permission, str) else tuple(permission or ())
    if not hasattr(api, "platform_routes"):
        api.platform_routes = []
    api.platform_routes.append(
        RouteInfo(
            method, path, summary, tag, permissions, body, responses, query, auth, description
        )
    )
    pattern = re.sub(r"\{(\w+)\}", r"<\1>", path)

    def decorate(handler):
        async def guarded(req, **params):
            try:
                principal = None
                if auth == BEARER:
                    principal = getattr(req.g, "principal", None)
                    if principal is None:
                        raise unauthorized("a bearer token is required")
                    if permissions:
                        principal.require(*permissions)
                return _response(
                    await handler(req, principal, **{k: unquote(v) for k, v in params.items()})
                )
            except PlatformError as e:
                return error_reply(e)
            except IntegrityError as e:
                return error_reply(
                    PlatformError(
                        409, "CONFLICT", "the change conflicts with existing data: %s" % e
                    )
                )
            except StoreError as e:
                _log.error("store unavailable", method=req.method, path=req.path, error=str(e))
                return error_reply(
                    PlatformError(503, "STORE_UNAVAILABLE", "the database is not available: %s" % e)
                )
            except Exception as e:
                _log.error(
                    "request failed",
                    method=req.method,
                    path=req.path,
                    error=repr(e),
                    traceback="".join(traceback.format_exception(type(e), e, e.__traceback__)),
                )
                return error_reply(
                    PlatformError(
                        500,
                        "INTERNAL_ERROR",
                        "the request failed (%s); the server log has the details"
                        % type(e).__name__,
                    )
                )

        guarded.__name__ = handler.__name__
        guarded.fc_auth = auth  # the server's auth hook reads it from req.route
        api.route(pattern, methods=[method])(guarded)
        return handler

    return decorate


# -- request helpers ----------------------------------------------------------------------------


def read_body(req, required=True):
    """The JSON body (a 400 VALIDATION_ERROR when it is not JSON; None when absent and not
    required)."""
    raw = req.body or b""
    if not raw.strip():
        if required:
            raise validation("the request needs a JSON body")
        return None
    try:
        return jsoncodec.loads(raw)
    except (ValueError, UnicodeError) as e:
        raise validation("the body is not valid JSON: %s" % e) from None


def query_int(req, name, default, minimum=None, maximum=None, clamp=False):
    raw = req.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation(
            "query parameter %s must be an integer, got %r" % (name, raw), field=name
        ) from None
    if clamp:
        return max(minimum, min(maximum, value))
    if minimum is not None and value < minimum:
        raise validation("query parameter %s must be at least %d" % (name, minimum), field=name)
    if maximum is not None and value > maximum:
        raise validation("query parameter %s must be at most %d" % (name, maximum), field=name)
    return value


def query_list(req, name, *aliases):
    """A comma-separated (or repeated) query parameter as a list; [] when absent."""
    values = []
    for key in (name,) + aliases:
        for raw in req.args.getlist(key) if hasattr(req.args, "getlist") else [req.args.get(key)]:
            if raw:
                values.extend(v.strip() for v in raw.split(",") if v.strip())
    return values


def query_str(req, name, default=None):
    raw = req.args.get(name)
    return default if raw is None or raw == "" else raw


def encode_cursor(*values):
    """An opaque page cursor holding `values` (the sort key of the last row of a page)."""
    return (
        base64.urlsafe_b64encode(json.dumps(list(values), separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def decode_cursor(text, count):
    """The `count` values of a cursor; 400 when it is not one of ours."""
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, UnicodeError):
        values = None
    if not isinstance(values, list) or len(values) != count:
        raise validation(
            "query parameter cursor is not a cursor this server gave out", field="cursor"
        )
    return values


def next_page_headers(req, cursor):
    """`X-Next-Cursor` and an RFC 8288 `Link: <...>; rel="next"` for a page that has a next one."""
    if cursor is None:
        return {}
    args = [(k, v) for k in req.args for v in req.args.getlist(k) if k != "cursor"]
    args.append(("cursor", cursor))
    return {"X-Next-Cursor": cursor, "Link": '<%s?%s>; rel="next"' % (req.path, urlencode(args))}


def list_filters(req, principal, filters):
    """(SQL conditions, params) of the list filters given as (query name, column) pairs, CSV
    lists matched with IN, plus the principal's client scope (`clientIds` narrows it)."""
    where, params = [], []
    for name, column in filters:
        values = query_list(req, name)
        if values:
            where.append("%s IN (%s)" % (column, marks(len(values))))
            params.extend(values)
    clients = query_list(req, "clientIds", "clientId")
    if clients:
        for client in clients:
            principal.require_client(client)
        where.append("client_id IN (%s)" % marks(len(clients)))
        params.extend(clients)
    scope, scope_params = principal.client_clause()
    return where, params, scope, scope_params


async def list_page(req, store, table, sort_column, where, params, scope, scope_params, to_json):
    """One page, newest first, of `table` (a bare array, spec §3.1), with the cursor of the
    next page in `X-Next-Cursor` / `Link` when there is one."""
    size = query_int(req, "size", 50, 1, 1000, clamp=True)
    cursor = query_str(req, "cursor")
    where = list(where)
    params = list(params)
    if cursor:
        after_sort, after_id = decode_cursor(cursor, 2)
        where.append("(%s < ? OR (%s = ? AND id < ?))" % (sort_column, sort_column))
        params.extend([after_sort, after_sort, after_id])
    sql = "SELECT * FROM %s WHERE %s%s ORDER BY %s DESC, id DESC LIMIT ?" % (
        table,
        " AND ".join(where) if where else "1 = 1",
        scope,
        sort_column,
    )
    rows = await store.fetchall(sql, params + scope_params + [size + 1])
    more = len(rows) > size
    rows = rows[:size]
    headers = next_page_headers(
        req, encode_cursor(rows[-1][sort_column], rows[-1]["id"]) if more else None
    )
    return Reply(200, [to_json(r) for r in rows], headers)
