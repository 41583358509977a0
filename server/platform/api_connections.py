"""Connections (spec/platform.md §1.5, §3.7): a pause switch and credential grouping that
subscriptions point at. It has no URL (the subscription holds it).

    POST   /api/connections           {code*, name*, serviceAccountId?, description?,
                                       externalId?, clientId?, status?}    -> 201 {id}
    GET    /api/connections?clientId&status&serviceAccountId              -> {connections, total}
    GET    /api/connections/{id}                                          -> connection
    PUT    /api/connections/{id}      {name?, description?, externalId?, serviceAccountId?,
                                       status?}                           -> 204
    DELETE /api/connections/{id}                                          -> 204
    POST   /api/connections/{id}/pause | /resume (alias /activate)        -> connection

`serviceAccountId` defaults to the caller's principal id. While a connection is PAUSED the
scheduler holds the PENDING jobs of its subscriptions; resuming wakes the scheduler so they
move at once. A connection that subscriptions use cannot be deleted (409 CONNECTION_IN_USE).
"""

from . import ids
from .domain import Aggregate, list_rows
from .routes import Reply, platform_route, read_body
from .validate import Fields

ACTIVE = "ACTIVE"
PAUSED = "PAUSED"
STATUSES = (ACTIVE, PAUSED)

CODE = r"^[a-z][a-z0-9-]*$"

VIEW = "platform:messaging:connection:view"
CREATE = "platform:messaging:connection:create"
UPDATE = "platform:messaging:connection:update"
DELETE = "platform:messaging:connection:delete"

ENTITY = "Connection"
TAG = "Connections"

_PROPERTIES = {
    "name": {"type": "string", "maxLength": 255},
    "description": {"type": ["string", "null"]},
    "externalId": {"type": ["string", "null"], "maxLength": 100},
    "serviceAccountId": {"type": "string", "maxLength": 17},
    "status": {"type": "string", "enum": list(STATUSES)},
}

SCHEMAS = {
    "Connection": {
        "type": "object",
        "properties": dict(
            _PROPERTIES,
            id={"type": "string", "example": "con_0HZXEQ5Y8JY5Z"},
            code={"type": "string"},
            clientId={"type": ["string", "null"]},
            clientIdentifier={"type": ["string", "null"]},
            createdAt={"type": "string", "format": "date-time"},
            updatedAt={"type": "string", "format": "date-time"},
        ),
    },
    "ConnectionList": {
        "type": "object",
        "properties": {
            "connections": {"type": "array", "items": {"$ref": "#/components/schemas/Connection"}},
            "total": {"type": "integer"},
        },
    },
    "CreateConnection": {
        "type": "object",
        "required": ["code", "name"],
        "properties": dict(
            _PROPERTIES,
            code={"type": "string", "maxLength": 100, "pattern": CODE},
            clientId={
                "type": ["string", "null"],
                "description": "default: the caller's first client (anchors: anchor level)",
            },
            serviceAccountId=dict(
                _PROPERTIES["serviceAccountId"], description="default: the caller's principal id"
            ),
        ),
    },
    "UpdateConnection": {"type": "object", "properties": _PROPERTIES},
    "ConnectionCreated": {"type": "object", "properties": {"id": {"type": "string"}}},
}


def connection_json(row):
    return {
        "id": row["id"],
        "code": row["code"],
        "name": row["name"],
        "description": row["description"],
        "externalId": row["external_id"],
        "status": row["status"],
        "serviceAccountId": row["service_account_id"],
        "clientId": row["client_id"],
        "clientIdentifier": row["client_identifier"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def read_settings(fields, creating, principal):
    """The columns a create or update body sets (an update: only those present)."""
    out = {}
    if creating or fields.has("name"):
        out["name"] = fields.string("name", required=True, max_length=255)
    for name, column, limit in (
        ("description", "description", None),
        ("externalId", "external_id", 100),
    ):
        if creating or fields.has(name):
            out[column] = fields.string(name, max_length=limit)
    if creating or fields.has("serviceAccountId"):
        out["service_account_id"] = _service_account(fields, creating, principal)
    if creating or fields.has("status"):
        out["status"] = fields.choice(
            "status", choices=STATUSES, required=not creating, default=ACTIVE
        )
    return out


def _service_account(fields, creating, principal):
    value = fields.string("serviceAccountId", required=not creating, max_length=17)
    if value is None:
        value = principal.id
        if len(value) > 17:  # the column holds a 17-character typed id
            fields.fail(
                "serviceAccountId", "is required (the caller's id %r is too long to use)" % value
            )
    return value


CONNECTIONS = Aggregate("msg_connections", "connection", ids.CONNECTION, ENTITY, "connection_id")


async def delete_connection(tx, principal, id):
    await CONNECTIONS.delete(tx, principal, id, "point them elsewhere first")


# -- routes -------------------------------------------------------------------------------------


def register(api, platform):
    store = platform.store

    async def change(principal, id, changes, operation):
        row = await store.write(CONNECTIONS.update, principal, id, changes, operation)
        if changes.get("status") == ACTIVE:
            platform.signals.wake("scheduler")  # the jobs it held go now, not at the next poll
        return row

    @platform_route(
        api,
        "POST",
        "/api/connections",
        tag=TAG,
        summary="Create a connection",
        permission=CREATE,
        body="CreateConnection",
        responses={201: "ConnectionCreated", 400: "Error", 403: "Error", 409: "Error"},
    )
    async def create(req, principal):
        fields = Fields(read_body(req))
        code = fields.string("code", required=True, max_length=100, pattern=CODE)
        settings = read_settings(fields, True, principal)
        client_id = principal.default_client(fields.string("clientId", max_length=17))
        id = await store.write(CONNECTIONS.create, principal, code, client_id, settings)
        return Reply(201, {"id": id}, {"Location": "/api/connections/" + id})

    @platform_route(
        api,
        "GET",
        "/api/connections",
        tag=TAG,
        summary="Connections the caller may see, by code",
        permission=VIEW,
        responses={200: "ConnectionList", 400: "Error", 403: "Error"},
        query=(
            ("clientId", "string", "only this client's connections"),
            ("status", "string", "comma-separated statuses (ACTIVE, PAUSED)"),
            ("serviceAccountId", "string", "only this service account's connections"),
        ),
    )
    async def list_connections(req, principal):
        rows = await list_rows(
            store,
            req,
            principal,
            "msg_connections",
            STATUSES,
            ("serviceAccountId", "service_account_id"),
        )
        return {"connections": [connection_json(r) for r in rows], "total": len(rows)}

    @platform_route(
        api,
        "GET",
        "/api/connections/{id}",
        tag=TAG,
        summary="One connection",
        permission=VIEW,
        responses={200: "Connection", 403: "Error", 404: "Error"},
    )
    async def get_connection(req, principal, id):
        return connection_json(await CONNECTIONS.load(store, principal, id))

    @platform_route(
        api,
        "PUT",
        "/api/connections/{id}",
        tag=TAG,
        summary="Change a connection (status PAUSED holds its subscriptions' jobs)",
        permission=UPDATE,
        body="UpdateConnection",
        responses={204: None, 400: "Error", 403: "Error", 404: "Error"},
    )
    async def update(req, principal, id):
        changes = read_settings(Fields(read_body(req)), False, principal)
        await change(principal, id, changes, "UpdateConnectionCommand")

    @platform_route(
        api,
        "DELETE",
        "/api/connections/{id}",
        tag=TAG,
        summary="Delete a connection no subscription uses",
        permission=DELETE,
        responses={204: None, 403: "Error", 404: "Error", 409: "Error"},
    )
    async def delete(req, principal, id):
        await store.write(delete_connection, principal, id)

    for action, status in (("pause", PAUSED), ("resume", ACTIVE), ("activate", ACTIVE)):
        register_status_action(api, change, action, status)


def register_status_action(api, change, action, status):
    operation = "%sConnectionCommand" % action.capitalize()

    @platform_route(
        api,
        "POST",
        "/api/connections/{id}/" + action,
        tag=TAG,
        summary="Set a connection %s" % status,
        permission=UPDATE,
        responses={200: "Connection", 403: "Error", 404: "Error"},
    )
    async def set_status(req, principal, id):
        return connection_json(await change(principal, id, {"status": status}, operation))
