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

from . import ids
from .domain import Aggregate, list_rows
from .errors import conflict
from .routerconfig import router_pool_code
from .routes import Reply, platform_route, read_body
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


POOLS = Aggregate(
    "msg_dispatch_pools", "dispatch pool", ids.DISPATCH_POOL, ENTITY, "dispatch_pool_id"
)


async def update_pool(tx, principal, id, changes, operation):
    row = await POOLS.load(tx, principal, id)
    stays_archived = changes.get("status", row["status"]) == ARCHIVED
    if row["status"] == ARCHIVED and stays_archived and set(changes) - {"status"}:
        raise conflict(
            "DISPATCH_POOL_ARCHIVED",
            "dispatch pool %s is archived: activate it before changing it" % id,
        )
    return await POOLS.update(tx, principal, id, changes, operation, row)


async def delete_pool(tx, principal, id):
    await POOLS.delete(tx, principal, id, "move them to another pool first, or archive the pool")


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
        id = await store.write(POOLS.create, principal, code, client_id, settings)
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
        return pool_json(await POOLS.load(store, principal, id))

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
