"""Dispatch pools (spec/platform.md §1.6, §3.6): the concurrency and rate limit a
subscription's deliveries share in the router.

    POST   /api/dispatch-pools            {code*, name*, description?, clientId?, rateLimit?,
                                           concurrency?, status?}          -> 201 {id}
    GET    /api/dispatch-pools?clientId&status                            -> {pools, total}
    GET    /api/dispatch-pools/{id}                                       -> pool
    PUT    /api/dispatch-pools/{id}       {name?, description?, rateLimit?, concurrency?, status?}
                                                                          -> 204
    DELETE /api/dispatch-pools/{id}                                       -> 204
    POST   /api/dispatch-pools/{id}/activate|suspend|archive              -> pool

A code is unique per client; the router knows a client's pool as `CODE@clientId`
(routerconfig.py), given back as `routerPoolCode`. `rateLimit` is messages per minute, null
for none. Every change reaches the router in this process at once (`platform.pools_changed`);
the router only runs ACTIVE pools. An ARCHIVED pool refuses changes to its settings until it
is activated again. A pool that subscriptions use cannot be deleted (409
DISPATCH_POOL_IN_USE): they would be left pointing at nothing.
"""

import re

from . import audit, clock, ids
from .errors import conflict, not_found, validation
from .routerconfig import router_pool_code
from .routes import Reply, platform_route, query_list, query_str, read_body
from .validate import Fields

ACTIVE = "ACTIVE"
SUSPENDED = "SUSPENDED"
ARCHIVED = "ARCHIVED"
STATUSES = (ACTIVE, SUSPENDED, ARCHIVED)

CODE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # no "@": the router's name for a client's pool uses it
MAX_CONCURRENCY = 1000
DEFAULT_CONCURRENCY = 10

VIEW = "platform:messaging:dispatch-pool:view"
CREATE = "platform:messaging:dispatch-pool:create"
UPDATE = "platform:messaging:dispatch-pool:update"
DELETE = "platform:messaging:dispatch-pool:delete"

ENTITY = "DispatchPool"
TAG = "Dispatch pools"

_POOL_PROPERTIES = {
    "name": {"type": "string", "maxLength": 255},
    "description": {"type": ["string", "null"]},
    "rateLimit": {
        "type": ["integer", "null"],
        "minimum": 1,
        "description": "messages per minute; null: no limit",
    },
    "concurrency": {"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY},
    "status": {"type": "string", "enum": list(STATUSES)},
}

SCHEMAS = {
    "DispatchPool": {
        "type": "object",
        "properties": dict(
            _POOL_PROPERTIES,
            id={"type": "string", "example": "dpl_0HZXEQ5Y8JY5Z"},
            code={"type": "string"},
            clientId={"type": ["string", "null"]},
            clientIdentifier={"type": ["string", "null"]},
            routerPoolCode={
                "type": "string",
                "description": "the pool's name in the router (CODE@clientId for a client's pool)",
            },
            createdAt={"type": "string", "format": "date-time"},
            updatedAt={"type": "string", "format": "date-time"},
        ),
    },
    "DispatchPoolList": {
        "type": "object",
        "properties": {
            "pools": {"type": "array", "items": {"$ref": "#/components/schemas/DispatchPool"}},
            "total": {"type": "integer"},
        },
    },
    "CreateDispatchPool": {
        "type": "object",
        "required": ["code", "name"],
        "properties": dict(
            _POOL_PROPERTIES,
            code={"type": "string", "maxLength": 100, "pattern": CODE},
            clientId={
                "type": ["string", "null"],
                "description": "default: the caller's first client (anchors: anchor level)",
            },
            concurrency=dict(_POOL_PROPERTIES["concurrency"], default=DEFAULT_CONCURRENCY),
        ),
    },
    "UpdateDispatchPool": {"type": "object", "properties": _POOL_PROPERTIES},
    "DispatchPoolCreated": {"type": "object", "properties": {"id": {"type": "string"}}},
}


def pool_json(row):
    return {
        "id": row["id"],
        "code": row["code"],
        "name": row["name"],
        "description": row["description"],
        "clientId": row["client_id"],
        "clientIdentifier": row["client_identifier"],
        "status": row["status"],
        "rateLimit": row["rate_limit"],
        "concurrency": row["concurrency"],
        "routerPoolCode": router_pool_code(row["code"], row["client_id"]),
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def read_settings(fields, creating):
    """The settings a create or update body gives, as columns; an update sets only those
    present (an explicit null rateLimit removes the limit)."""
    out = {}
    if creating or fields.has("name"):
        out["name"] = fields.string("name", required=True, max_length=255)
    if creating or fields.has("description"):
        out["description"] = fields.string("description")
    if creating or fields.has("rateLimit", "rateLimitPerMinute"):
        out["rate_limit"] = fields.integer("rateLimit", "rateLimitPerMinute", minimum=1)
    if creating or fields.has("concurrency"):
        out["concurrency"] = fields.integer(
            "concurrency",
            required=not creating,
            default=DEFAULT_CONCURRENCY,
            minimum=1,
            maximum=MAX_CONCURRENCY,
        )
    if creating or fields.has("status"):
        out["status"] = fields.choice(
            "status", choices=STATUSES, required=not creating, default=ACTIVE
        )
    return out


async def load_pool(db, principal, id):
    """The pool row (`db`: the store or a transaction); 404, or 403 for another tenant's."""
    row = await db.fetchone("SELECT * FROM msg_dispatch_pools WHERE id = ?", (id,))
    if row is None:
        raise not_found("dispatch pool", id)
    principal.require_client(row["client_id"])
    return row


# -- units of work ------------------------------------------------------------------------------


async def create_pool(tx, principal, code, client_id, settings):
    taken = await tx.fetchone(
        "SELECT id FROM msg_dispatch_pools WHERE code = ? AND COALESCE(client_id, '') = ?",
        (code, client_id or ""),
    )
    if taken is not None:
        raise conflict(
            "DISPATCH_POOL_CODE_EXISTS",
            "dispatch pool %s already exists for %s (%s)"
            % (code, client_id or "anchor level", taken["id"]),
        )
    id = ids.typed(ids.DISPATCH_POOL)
    now = clock.now()
    row = dict(settings, id=id, code=code, client_id=client_id, created_at=now, updated_at=now)
    await tx.insert("msg_dispatch_pools", tuple(row), [tuple(row.values())])
    details = camel_keys(dict(settings, code=code, client_id=client_id))
    await audit.record(tx, principal, ENTITY, id, "CreateDispatchPoolCommand", details, client_id)
    return id


async def update_pool(tx, principal, id, changes, operation):
    row = await load_pool(tx, principal, id)
    stays_archived = changes.get("status", row["status"]) == ARCHIVED
    if row["status"] == ARCHIVED and stays_archived and set(changes) - {"status"}:
        raise conflict(
            "DISPATCH_POOL_ARCHIVED",
            "dispatch pool %s is archived: activate it before changing it" % id,
        )
    await set_columns(tx, "msg_dispatch_pools", id, changes)
    await audit.record(tx, principal, ENTITY, id, operation, camel_keys(changes), row["client_id"])
    return await load_pool(tx, principal, id)


async def delete_pool(tx, principal, id):
    row = await load_pool(tx, principal, id)
    used = await tx.fetchone(
        "SELECT COUNT(*) AS n FROM msg_subscriptions WHERE dispatch_pool_id = ?", (id,)
    )
    if used["n"]:
        raise conflict(
            "DISPATCH_POOL_IN_USE",
            "dispatch pool %s is used by %d subscription(s): move them to another pool first, "
            "or archive the pool" % (id, used["n"]),
        )
    await tx.execute("DELETE FROM msg_dispatch_pools WHERE id = ?", (id,))
    await audit.record(
        tx,
        principal,
        ENTITY,
        id,
        "DeleteDispatchPoolCommand",
        {"code": row["code"]},
        row["client_id"],
    )


# -- shared with api_connections.py ---------------------------------------------------------------


async def set_columns(tx, table, id, changes):
    """UPDATE `changes` (column -> value; names from our code, never from a request) and
    updated_at of row `id`."""
    columns = dict(changes, updated_at=clock.now())
    await tx.execute(
        "UPDATE %s SET %s WHERE id = ?" % (table, ", ".join(c + " = ?" for c in columns)),
        (*columns.values(), id),
    )


async def list_rows(store, req, principal, table, statuses, *exact):
    """The rows of an aggregate `table` the caller may see, by code, filtered by the query's
    `clientId`, `status` (comma-separated, one of `statuses`) and the (query name, column)
    pairs `exact`."""
    sql = "SELECT * FROM %s WHERE 1 = 1" % table
    params = []
    client_id = query_str(req, "clientId")
    if client_id is not None:
        principal.require_client(client_id)
    for name, column in (("clientId", "client_id"),) + exact:
        value = query_str(req, name)
        if value is not None:
            sql += " AND %s = ?" % column
            params.append(value)
    wanted = [s.upper() for s in query_list(req, "status", "statuses")]
    for status in wanted:
        if status not in statuses:
            raise validation(
                "query parameter status: %r is not one of %s" % (status, ", ".join(statuses)),
                field="status",
            )
    if wanted:
        sql += " AND status IN (%s)" % ",".join("?" * len(wanted))
        params.extend(wanted)
    scope, scope_params = principal.client_clause()
    return await store.fetchall(sql + scope + " ORDER BY code, id", (*params, *scope_params))


def camel_keys(columns):
    """Column changes as the API names them (rate_limit -> rateLimit), for the audit trail."""
    return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): v for k, v in columns.items()}


# -- routes -------------------------------------------------------------------------------------


def register(api, platform):
    store = platform.store

    @platform_route(
        api,
        "POST",
        "/api/dispatch-pools",
        tag=TAG,
        summary="Create a dispatch pool",
        permission=CREATE,
        body="CreateDispatchPool",
        responses={201: "DispatchPoolCreated", 400: "Error", 403: "Error", 409: "Error"},
    )
    async def create(req, principal):
        fields = Fields(read_body(req))
        code = fields.string("code", required=True, max_length=100, pattern=CODE)
        settings = read_settings(fields, creating=True)
        client_id = principal.default_client(fields.string("clientId", max_length=17))
        id = await store.write(create_pool, principal, code, client_id, settings)
        await platform.pools_changed()
        return Reply(201, {"id": id}, {"Location": "/api/dispatch-pools/" + id})

    @platform_route(
        api,
        "GET",
        "/api/dispatch-pools",
        tag=TAG,
        summary="Dispatch pools the caller may see, by code",
        permission=VIEW,
        responses={200: "DispatchPoolList", 400: "Error", 403: "Error"},
        query=(
            ("clientId", "string", "only this client's pools"),
            ("status", "string", "comma-separated statuses (ACTIVE, SUSPENDED, ARCHIVED)"),
        ),
    )
    async def list_pools(req, principal):
        rows = await list_rows(store, req, principal, "msg_dispatch_pools", STATUSES)
        return {"pools": [pool_json(r) for r in rows], "total": len(rows)}

    @platform_route(
        api,
        "GET",
        "/api/dispatch-pools/{id}",
        tag=TAG,
        summary="One dispatch pool",
        permission=VIEW,
        responses={200: "DispatchPool", 403: "Error", 404: "Error"},
    )
    async def get_pool(req, principal, id):
        return pool_json(await load_pool(store, principal, id))

    @platform_route(
        api,
        "PUT",
        "/api/dispatch-pools/{id}",
        tag=TAG,
        summary="Change a dispatch pool's settings or status",
        permission=UPDATE,
        body="UpdateDispatchPool",
        responses={204: None, 400: "Error", 403: "Error", 404: "Error", 409: "Error"},
    )
    async def update(req, principal, id):
        changes = read_settings(Fields(read_body(req)), creating=False)
        await store.write(update_pool, principal, id, changes, "UpdateDispatchPoolCommand")
        await platform.pools_changed()

    @platform_route(
        api,
        "DELETE",
        "/api/dispatch-pools/{id}",
        tag=TAG,
        summary="Delete a dispatch pool no subscription uses",
        permission=DELETE,
        responses={204: None, 403: "Error", 404: "Error", 409: "Error"},
    )
    async def delete(req, principal, id):
        await store.write(delete_pool, principal, id)
        await platform.pools_changed()

    for action, status in (("activate", ACTIVE), ("suspend", SUSPENDED), ("archive", ARCHIVED)):
        register_status_action(api, platform, action, status)


def register_status_action(api, platform, action, status):
    operation = "%sDispatchPoolCommand" % action.capitalize()

    @platform_route(
        api,
        "POST",
        "/api/dispatch-pools/{id}/" + action,
        tag=TAG,
        summary="Set a dispatch pool %s" % status,
        permission=UPDATE,
        responses={200: "DispatchPool", 403: "Error", 404: "Error"},
    )
    async def set_status(req, principal, id):
        row = await platform.store.write(update_pool, principal, id, {"status": status}, operation)
        await platform.pools_changed()
        return pool_json(row)
