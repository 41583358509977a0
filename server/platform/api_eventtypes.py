"""Event types (spec/platform.md §1.3): the catalogue of event-type codes,
`application:subdomain:aggregate:event`, that applications publish and subscriptions bind.

    GET    /api/event-types              {eventTypes: [...], total}   ?status&application&subdomain&aggregate&code
    POST   /api/event-types              201 EventType                (409 CODE_EXISTS)
    GET    /api/event-types/{id}         EventType
    PUT    /api/event-types/{id}         204                          name, description, status, clientScoped
    DELETE /api/event-types/{id}         204                          (409 EVENT_TYPE_IN_USE)

Event types are platform-wide (the table has no client): any principal with the view
permission reads them, only anchors change them. Events are not checked against this
catalogue on ingest (as in every implementation); the catalogue documents and feeds the
subscription editor. The code is fixed once created; ARCHIVED keeps a retired type on record.
Deleting a type that a subscription binds by its exact code is refused: archive it instead.
"""

from . import audit, clock, ids
from .domain import immutable, load_for_change, update_columns
from .errors import PlatformError, conflict, not_found
from .matching import code_problem, type_matches
from .routes import Reply, platform_route, query_str, read_body
from .store import IntegrityError
from .validate import Fields

VIEW = "platform:messaging:event-type:view"
CREATE = "platform:messaging:event-type:create"
UPDATE = "platform:messaging:event-type:update"
DELETE = "platform:messaging:event-type:delete"

STATUSES = ("CURRENT", "ARCHIVED")
SOURCES = ("CODE", "API", "UI")
ENTITY = "EventType"
TAG = "Event types"

_STRING = {"type": "string"}
_NULLABLE = {"type": ["string", "null"]}

SCHEMAS = {
    "EventType": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "example": "evt_0HZXEQ5Y8JY5Z"},
            "code": {"type": "string", "example": "orders:fulfillment:shipment:shipped"},
            "name": _STRING,
            "description": _NULLABLE,
            "status": {"type": "string", "enum": list(STATUSES)},
            "source": {"type": "string", "enum": list(SOURCES)},
            "clientScoped": {"type": "boolean"},
            "application": _STRING,
            "subdomain": _STRING,
            "aggregate": _STRING,
            "eventName": _STRING,
            "createdAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"},
        },
    },
    "EventTypeList": {
        "type": "object",
        "properties": {
            "eventTypes": {"type": "array", "items": {"$ref": "#/components/schemas/EventType"}},
            "total": {"type": "integer"},
        },
    },
    "CreateEventType": {
        "type": "object",
        "required": ["code", "name"],
        "properties": {
            "code": {
                "type": "string",
                "maxLength": 200,
                "description": "application:subdomain:aggregate:event, four non-empty segments",
            },
            "name": {"type": "string", "maxLength": 255},
            "description": _NULLABLE,
            "clientScoped": {"type": "boolean", "default": False},
            "source": {"type": "string", "enum": list(SOURCES), "default": "API"},
        },
    },
    "UpdateEventType": {
        "type": "object",
        "description": "only the fields given change; the code cannot",
        "properties": {
            "name": {"type": "string", "maxLength": 255},
            "description": _NULLABLE,
            "clientScoped": {"type": "boolean"},
            "status": {"type": "string", "enum": list(STATUSES)},
        },
    },
}


def event_type_json(row):
    return {
        "id": row["id"],
        "code": row["code"],
        "name": row["name"],
        "description": row["description"],
        "status": row["status"],
        "source": row["source"],
        "clientScoped": bool(row["client_scoped"]),
        "application": row["application"],
        "subdomain": row["subdomain"],
        "aggregate": row["aggregate"],
        "eventName": row["code"].split(":")[3],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


def read_code(body):
    code = body.string("code", required=True, max_length=200)
    problem = code_problem(code)
    if problem:
        raise PlatformError(400, "INVALID_CODE_FORMAT", "code: " + problem, field="code")
    return code


def read_changes(body):
    """The columns a create or update sets from the fields present in `body`."""
    changes = {}
    if body.has("name"):
        changes["name"] = body.string("name", required=True, max_length=255)
    if body.has("description"):
        changes["description"] = body.string("description", max_length=4000)
    if body.has("clientScoped"):
        changes["client_scoped"] = body.boolean("clientScoped", required=True)
    if body.has("status"):
        changes["status"] = body.choice("status", choices=STATUSES, required=True)
    return changes


def register(api, platform):
    store = platform.store

    @platform_route(
        api,
        "GET",
        "/api/event-types",
        tag=TAG,
        summary="List event types, by code",
        permission=VIEW,
        responses={200: "EventTypeList", 400: "Error", 401: "Error", 403: "Error"},
        query=(
            ("status", "string", "CURRENT or ARCHIVED"),
            ("application", "string", "first code segment"),
            ("subdomain", "string", "second code segment"),
            ("aggregate", "string", "third code segment"),
            ("code", "string", "an exact code, or a pattern with * segments"),
        ),
    )
    async def list_event_types(req, principal):
        sql = "SELECT * FROM msg_event_types WHERE 1 = 1"
        params = []
        status = query_str(req, "status")
        if status is not None:
            status = Fields({"status": status}).choice("status", choices=STATUSES)
            sql += " AND status = ?"
            params.append(status)
        for column in ("application", "subdomain", "aggregate"):
            value = query_str(req, column)
            if value is not None:
                sql += " AND %s = ?" % column
                params.append(value)
        rows = await store.fetchall(sql + " ORDER BY code", params)
        code = query_str(req, "code")
        if code is not None:
            rows = [row for row in rows if type_matches(code, row["code"])]
        return {"eventTypes": [event_type_json(row) for row in rows], "total": len(rows)}

    @platform_route(
        api,
        "POST",
        "/api/event-types",
        tag=TAG,
        summary="Register an event type (anchor principals)",
        permission=CREATE,
        body="CreateEventType",
        responses={201: "EventType", 400: "Error", 403: "Error", 409: "Error"},
    )
    async def create_event_type(req, principal):
        principal.require_client(None)  # the catalogue is platform-wide
        body = Fields(read_body(req))
        code = read_code(body)
        changes = read_changes(body)
        if "name" not in changes:
            body.fail("name", "is required")
        application, subdomain, aggregate, _ = code.split(":")
        now = clock.now()
        row = {
            "id": ids.typed(ids.EVENT_TYPE),
            "code": code,
            "description": None,
            "status": "CURRENT",
            "source": body.choice("source", choices=SOURCES, default="API"),
            "client_scoped": False,
            "application": application,
            "subdomain": subdomain,
            "aggregate": aggregate,
            "created_at": now,
            "updated_at": now,
        }
        row.update(changes)

        async def create(tx):
            await tx.insert("msg_event_types", list(row), [tuple(row.values())])
            await audit.record(
                tx, principal, ENTITY, row["id"], "CreateEventTypeCommand", body.data
            )

        try:
            await store.write(create)
        except IntegrityError:
            raise conflict(
                "CODE_EXISTS", "an event type with code %r already exists" % code
            ) from None
        return Reply(201, event_type_json(row))

    @platform_route(
        api,
        "GET",
        "/api/event-types/{id}",
        tag=TAG,
        summary="One event type",
        permission=VIEW,
        responses={200: "EventType", 404: "Error"},
    )
    async def get_event_type(req, principal, id):
        row = await store.fetchone("SELECT * FROM msg_event_types WHERE id = ?", (id,))
        if row is None:
            raise not_found("event type", id)
        return event_type_json(row)

    @platform_route(
        api,
        "PUT",
        "/api/event-types/{id}",
        tag=TAG,
        summary="Change an event type's name, description, status or clientScoped (anchor principals)",
        permission=UPDATE,
        body="UpdateEventType",
        responses={204: None, 400: "Error", 403: "Error", 404: "Error"},
    )
    async def update_event_type(req, principal, id):
        principal.require_client(None)
        body = Fields(read_body(req))
        changes = read_changes(body)

        async def update(tx):
            current = await load_for_change(tx, principal, "msg_event_types", "event type", id)
            immutable(body, "code", current["code"])
            changes["updated_at"] = clock.now()
            await update_columns(tx, "msg_event_types", id, changes)
            await audit.record(tx, principal, ENTITY, id, "UpdateEventTypeCommand", body.data)

        await store.write(update)

    @platform_route(
        api,
        "DELETE",
        "/api/event-types/{id}",
        tag=TAG,
        summary="Remove an event type no subscription binds (anchor principals)",
        permission=DELETE,
        responses={204: None, 403: "Error", 404: "Error", 409: "Error"},
    )
    async def delete_event_type(req, principal, id):
        principal.require_client(None)

        async def delete(tx):
            current = await load_for_change(tx, principal, "msg_event_types", "event type", id)
            bound = await tx.fetchone(
                "SELECT COUNT(*) AS n FROM msg_subscription_event_types"
                " WHERE event_type_id = ? OR event_type_code = ?",
                (id, current["code"]),
            )
            if bound["n"]:
                raise conflict(
                    "EVENT_TYPE_IN_USE",
                    "%d subscription binding%s use event type %s; change them or archive the type"
                    " (PUT status ARCHIVED)"
                    % (bound["n"], "" if bound["n"] == 1 else "s", current["code"]),
                )
            await tx.execute("DELETE FROM msg_event_types WHERE id = ?", (id,))
            await audit.record(
                tx, principal, ENTITY, id, "DeleteEventTypeCommand", {"code": current["code"]}
            )

        await store.write(delete)
