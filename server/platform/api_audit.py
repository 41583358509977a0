"""Audit logs (spec/platform.md §1.9, §3.4): the platform's own changes (audit.py) and the
logs that applications submit through their outbox.

    POST /api/audit-logs/batch   {"items": [{entityType*, entityId*, operation*, operationData?,
                                  principalId?, performedAt?, applicationCode?, clientCode?}]}
                                 -> 200 {"results": [{id, status, error?}, ...]}  (positional)
    GET  /api/audit-logs?entityType&entityId&principalId&operation&clientId&from&to&size&cursor
                                 -> [auditLog, ...] newest first; X-Next-Cursor / Link headers
    GET  /api/audit-logs/{id}    -> auditLog

A batch holds at most 100 items (400 beyond). Items may be camelCase or snake_case (the RS SDK
writes `entity_type`, `operation_json`, `performed_at`). Each item gets its own result:
SUCCESS with the new id; BAD_REQUEST with the reason when the item is invalid (spec §10.4:
a bad item does not fail its batch); SKIPPED when its client is not the caller's. The valid
items are written together, in one statement. This platform keeps no client or application
registry: `clientCode` (or `clientId`) is the client id itself, `applicationCode` is stored as
the application id. Without one, a non-anchor caller's log belongs to its first client.
"""

from flowcatalyst.core import jsoncodec

from . import audit, clock, ids
from .errors import PlatformError, not_found, validation
from .routes import list_page, platform_route, query_str, read_body
from .validate import Fields

MAX_BATCH = 100
WRITE = "platform:admin:batch:audit-logs-write"
VIEW = "platform:admin:audit-log:view"
TAG = "Audit logs"

SUCCESS = "SUCCESS"
SKIPPED = "SKIPPED"
BAD_REQUEST = "BAD_REQUEST"

_STRING = {"type": "string", "maxLength": 100}
_NULLABLE = {"type": ["string", "null"], "maxLength": 100}

SCHEMAS = {
    "AuditLog": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "example": "aud_0HZXEQ5Y8JY5Z"},
            "entityType": _STRING,
            "entityId": _STRING,
            "operation": _STRING,
            "operationJson": {"description": "the operation's details (any JSON)"},
            "principalId": _NULLABLE,
            "applicationId": _NULLABLE,
            "clientId": _NULLABLE,
            "performedAt": {"type": "string", "format": "date-time"},
        },
    },
    "AuditLogList": {"type": "array", "items": {"$ref": "#/components/schemas/AuditLog"}},
    "AuditLogBatch": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "maxItems": MAX_BATCH,
                "items": {
                    "type": "object",
                    "required": ["entityType", "entityId", "operation"],
                    "properties": {
                        "entityType": _STRING,
                        "entityId": _STRING,
                        "operation": _STRING,
                        "operationData": {
                            "description": "any JSON (a string holding JSON is parsed)"
                        },
                        "principalId": _STRING,
                        "performedAt": {
                            "type": "string",
                            "format": "date-time",
                            "description": "default: now",
                        },
                        "applicationCode": _STRING,
                        "clientCode": dict(_STRING, description="the client id"),
                    },
                },
            }
        },
    },
    "AuditLogBatchResults": {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "description": "empty unless SUCCESS"},
                        "status": {"type": "string", "enum": [SUCCESS, SKIPPED, BAD_REQUEST]},
                        "error": {"type": "string"},
                    },
                },
            }
        },
    },
}


def audit_json(row):
    data = row["operation_json"]
    return {
        "id": row["id"],
        "entityType": row["entity_type"],
        "entityId": row["entity_id"],
        "operation": row["operation"],
        "operationJson": None if data is None else jsoncodec.loads(data),
        "principalId": row["principal_id"],
        "applicationId": row["application_id"],
        "clientId": row["client_id"],
        "performedAt": row["performed_at"],
    }


def _json_text(value):
    """JSON text of an item's operation data; a string that holds JSON counts as that JSON
    (SDK outboxes stringify it)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = jsoncodec.loads(value)
        except ValueError:
            pass  # a plain string is stored as one
    return jsoncodec.dumps(value)


def read_item(item, where, principal, now):
    """The aud_logs row of one batch item; PlatformError (400 or 403) when it cannot be one."""
    f = Fields(item, where)
    entity_type = f.string("entityType", required=True, max_length=100)
    entity_id = f.string("entityId", required=True, max_length=100)
    operation = f.string("operation", required=True, max_length=100)
    data = _json_text(f.any("operationData", "operationJson", "operation_json"))
    principal_id = f.string("principalId", max_length=100)
    performed_at = f.timestamp("performedAt", default=now)
    application_id = f.string("applicationCode", "applicationId", "application_id", max_length=100)
    client_id = f.string("clientCode", "clientId", "client_id", max_length=100)
    if client_id is None and not principal.is_anchor:
        client_id = next((c for c in principal.clients if c != "*"), None)
    principal.require_client(client_id)
    return (
        ids.typed(ids.AUDIT_LOG),
        entity_type,
        entity_id,
        operation,
        data,
        principal_id,
        application_id,
        client_id,
        performed_at,
    )


async def insert_logs(tx, rows):
    await tx.insert("aud_logs", audit.COLUMNS, rows)


def read_filters(req):
    """([SQL conditions], params) of the list's query filters."""
    where = []
    params = []
    for name, column in (
        ("entityType", "entity_type"),
        ("entityId", "entity_id"),
        ("principalId", "principal_id"),
        ("operation", "operation"),
        ("clientId", "client_id"),
        ("applicationId", "application_id"),
    ):
        value = query_str(req, name)
        if value is not None:
            where.append("%s = ?" % column)
            params.append(value)
    for name, condition in (("from", "performed_at >= ?"), ("to", "performed_at < ?")):
        value = query_str(req, name)
        if value is not None:
            try:
                params.append(clock.parse(value))
            except ValueError as e:
                raise validation("query parameter %s: %s" % (name, e), field=name) from None
            where.append(condition)
    return where, params


def register(api, platform):
    store = platform.store

    @platform_route(
        api,
        "POST",
        "/api/audit-logs/batch",
        tag=TAG,
        summary="Record audit logs (the outbox's AUDIT_LOG items), one result per item",
        permission=WRITE,
        body="AuditLogBatch",
        responses={200: "AuditLogBatchResults", 400: "Error", 403: "Error"},
    )
    async def batch(req, principal):
        items = Fields(read_body(req)).array("items", required=True, max_items=MAX_BATCH)
        now = clock.now()
        results = []
        rows = []
        for i, item in enumerate(items):
            try:
                row = read_item(item, "items[%d]" % i, principal, now)
            except PlatformError as e:
                status = SKIPPED if e.status == 403 else BAD_REQUEST
                results.append({"id": "", "status": status, "error": e.message})
                continue
            rows.append(row)
            results.append({"id": row[0], "status": SUCCESS})
        if rows:
            await store.write(insert_logs, rows)
        return {"results": results}

    @platform_route(
        api,
        "GET",
        "/api/audit-logs",
        tag=TAG,
        summary="Audit logs, newest first, a page at a time (X-Next-Cursor)",
        permission=VIEW,
        responses={200: "AuditLogList", 400: "Error", 403: "Error"},
        query=(
            ("entityType", "string", "only this entity type"),
            ("entityId", "string", "only this entity"),
            ("principalId", "string", "only this principal's"),
            ("operation", "string", "only this operation"),
            ("clientId", "string", "only this client's"),
            ("applicationId", "string", "only this application's"),
            ("from", "string", "performed at or after this time (RFC 3339)"),
            ("to", "string", "performed before this time (RFC 3339)"),
            ("size", "integer", "page size, 1..1000 (default 50)"),
            ("cursor", "string", "the X-Next-Cursor of the previous page"),
        ),
    )
    async def list_logs(req, principal):
        where, params = read_filters(req)
        scope, scope_params = principal.client_clause()
        return await list_page(
            req, store, "aud_logs", "performed_at", where, params, scope, scope_params, audit_json
        )

    @platform_route(
        api,
        "GET",
        "/api/audit-logs/{id}",
        tag=TAG,
        summary="One audit log",
        permission=VIEW,
        responses={200: "AuditLog", 403: "Error", 404: "Error"},
    )
    async def get_log(req, principal, id):
        row = await store.fetchone("SELECT * FROM aud_logs WHERE id = ?", (id,))
        if row is None:
            raise not_found("audit log", id)
        principal.require_client(row["client_id"])
        return audit_json(row)
