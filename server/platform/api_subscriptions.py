"""Subscriptions (spec/platform.md §1.4, §3.5): which events go to which webhook, and how.

    GET    /api/subscriptions                {subscriptions: [...], total}
                                             ?clientId&status&code&eventTypeCode&connectionId&dispatchPoolId
    POST   /api/subscriptions                201 Subscription + signingSecret   (409 SUBSCRIPTION_CODE_EXISTS)
    GET    /api/subscriptions/{id}           Subscription
    PUT    /api/subscriptions/{id}           204   partial: only the fields given change
    DELETE /api/subscriptions/{id}           204
    POST   /api/subscriptions/{id}/pause     204   status PAUSED: fan-out skips it
    POST   /api/subscriptions/{id}/resume    204   status ACTIVE

The webhook URL is `endpoint` on the wire (`target` accepted too) and `target` in the table.
`eventTypes` binds codes or patterns whose segments may be `*` (§1.4 matching); at least one.
Tenant: a write without `clientId` acts on the caller's first client (anchors: anchor level,
every client's events); the caller must be able to act on the client. A connection or dispatch
pool must exist and be the subscription's client's or anchor-level. `dispatchPoolCode` may
name the pool instead of `dispatchPoolId`.

Signing: every subscription has a secret. Without `signingSecret` a create makes one (64 hex
characters, or with `standardWebhooks` a `whsec_` + base64 key, the form Standard Webhooks
needs); the create response is the only one that shows it, others say `hasSigningSecret`.

Every write also moves `fc_versions.subscriptions` in its transaction: fan-out reloads the
subscriptions when that number moves, so a change applies from the next event on (no TTL).
Each write leaves one aud_logs row; the secret never goes into it.
"""

import base64
import binascii
import secrets

from . import audit, clock, ids
from .domain import bump_subscriptions, http_url, immutable, load_for_change, update_columns
from .errors import conflict, not_found
from .jobstate import MODES, parse_mode
from .matching import pattern_problem
from .routes import Reply, platform_route, query_str, read_body
from .store import IntegrityError, marks
from .validate import Fields

VIEW = "platform:messaging:subscription:view"
CREATE = "platform:messaging:subscription:create"
UPDATE = "platform:messaging:subscription:update"
DELETE = "platform:messaging:subscription:delete"

CODE_PATTERN = r"^[a-z][a-z0-9-]*[a-z0-9]$"
ACTIVE = "ACTIVE"
PAUSED = "PAUSED"
STATUSES = (ACTIVE, PAUSED)
SOURCES = ("CODE", "API", "UI")
STANDARD_PREFIX = "whsec_"
MAX_BINDINGS = 100
ENTITY = "Subscription"
TAG = "Subscriptions"

DEFAULTS = {
    "application_code": None,
    "description": None,
    "client_identifier": None,
    "client_scoped": False,
    "connection_id": None,
    "queue": None,
    "source": "API",
    "status": ACTIVE,
    "max_age_seconds": 86400,
    "dispatch_pool_id": None,
    "delay_seconds": 0,
    "sequence": 99,
    "mode": "IMMEDIATE",
    "timeout_seconds": 30,
    "max_retries": 3,
    "service_account_id": None,
    "data_only": True,
    "standard_webhooks": False,
}

# (wire names, column, reader): the scalar fields a create or an update may set
FIELDS = (
    (("name",), "name", lambda b, n: b.string(n, required=True, max_length=255)),
    (("description",), "description", lambda b, n: b.string(n, max_length=4000)),
    (("endpoint", "target"), "target", lambda b, n, a: http_url(b, n, a, required=True)),
    (("clientScoped",), "client_scoped", lambda b, n: b.boolean(n, required=True)),
    (("applicationCode",), "application_code", lambda b, n: b.string(n, max_length=100)),
    (("connectionId",), "connection_id", lambda b, n: b.string(n, max_length=17)),
    (("dispatchPoolId",), "dispatch_pool_id", lambda b, n: b.string(n, max_length=17)),
    (("serviceAccountId",), "service_account_id", lambda b, n: b.string(n, max_length=17)),
    (("queue",), "queue", lambda b, n: b.string(n, max_length=255)),
    (("source",), "source", lambda b, n: b.choice(n, choices=SOURCES, required=True)),
    (("status",), "status", lambda b, n: b.choice(n, choices=STATUSES, required=True)),
    (
        ("mode",),
        "mode",
        lambda b, n: b.choice(n, choices=MODES, parse=parse_mode, required=True),
    ),
    (("delaySeconds",), "delay_seconds", lambda b, n: b.integer(n, required=True, minimum=0)),
    (("sequence",), "sequence", lambda b, n: b.integer(n, required=True, minimum=0)),
    (
        ("timeoutSeconds",),
        "timeout_seconds",
        lambda b, n: b.integer(n, required=True, minimum=1, maximum=900),
    ),
    (
        ("maxRetries",),
        "max_retries",
        lambda b, n: b.integer(n, required=True, minimum=0, maximum=100),
    ),
    (("maxAgeSeconds",), "max_age_seconds", lambda b, n: b.integer(n, required=True, minimum=1)),
    (("dataOnly",), "data_only", lambda b, n: b.boolean(n, required=True)),
    (("signingSecret",), "signing_secret", lambda b, n: b.string(n, max_length=200)),
    (("standardWebhooks",), "standard_webhooks", lambda b, n: b.boolean(n, required=True)),
)

_STRING = {"type": "string"}
_NULLABLE = {"type": ["string", "null"]}
_BINDING = {"$ref": "#/components/schemas/SubscriptionEventType"}
_CONFIG = {"$ref": "#/components/schemas/SubscriptionConfigEntry"}
_WRITABLE = {
    "name": {"type": "string", "maxLength": 255},
    "description": _NULLABLE,
    "endpoint": {"type": "string", "format": "uri", "description": "http(s) webhook URL"},
    "eventTypes": {"type": "array", "minItems": 1, "maxItems": MAX_BINDINGS, "items": _BINDING},
    "customConfig": {"type": "array", "items": _CONFIG},
    "clientScoped": {"type": "boolean"},
    "applicationCode": _NULLABLE,
    "connectionId": _NULLABLE,
    "dispatchPoolId": _NULLABLE,
    "dispatchPoolCode": {"type": "string", "description": "a pool code, resolved to its id"},
    "serviceAccountId": _NULLABLE,
    "queue": _NULLABLE,
    "source": {"type": "string", "enum": list(SOURCES)},
    "status": {"type": "string", "enum": list(STATUSES)},
    "mode": {"type": "string", "enum": list(MODES), "description": "BLOCKONERROR etc. accepted"},
    "delaySeconds": {"type": "integer", "minimum": 0},
    "sequence": {"type": "integer", "minimum": 0},
    "timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 900},
    "maxRetries": {"type": "integer", "minimum": 0, "maximum": 100},
    "maxAgeSeconds": {"type": "integer", "minimum": 1},
    "dataOnly": {"type": "boolean"},
    "signingSecret": {"type": "string", "maxLength": 200},
    "standardWebhooks": {"type": "boolean"},
}

SCHEMAS = {
    "SubscriptionEventType": {
        "type": "object",
        "required": ["eventTypeCode"],
        "properties": {
            "eventTypeCode": {"type": "string", "example": "orders:*:order:created"},
            "eventTypeId": _NULLABLE,
            "specVersion": _NULLABLE,
            "filter": _NULLABLE,
        },
    },
    "SubscriptionConfigEntry": {
        "type": "object",
        "required": ["key"],
        "properties": {"key": _STRING, "value": _NULLABLE},
    },
    "Subscription": {
        "type": "object",
        "properties": dict(
            _WRITABLE,
            id={"type": "string", "example": "sub_0HZXEQ5Y8JY5Z"},
            code=_STRING,
            clientId=_NULLABLE,
            clientIdentifier=_NULLABLE,
            dispatchPoolCode=_NULLABLE,
            hasSigningSecret={"type": "boolean"},
            signingSecret={"type": "string", "description": "in the create response only"},
            createdBy=_NULLABLE,
            createdAt={"type": "string", "format": "date-time"},
            updatedAt={"type": "string", "format": "date-time"},
        ),
    },
    "SubscriptionList": {
        "type": "object",
        "properties": {
            "subscriptions": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Subscription"},
            },
            "total": {"type": "integer"},
        },
    },
    "CreateSubscription": {
        "type": "object",
        "required": ["code", "name", "endpoint", "eventTypes"],
        "properties": dict(
            _WRITABLE,
            code={"type": "string", "pattern": CODE_PATTERN, "maxLength": 100},
            clientId=_NULLABLE,
        ),
    },
    "UpdateSubscription": {
        "type": "object",
        "description": "only the fields given change; eventTypes and customConfig are replaced",
        "properties": _WRITABLE,
    },
}


# -- reading a body -----------------------------------------------------------------------------


def read_columns(body):
    """The columns set by the scalar fields present in `body`."""
    return {
        column: read(body, *names)
        for names, column, read in FIELDS
        if body.has(names[0], *names[1:])
    }


def read_bindings(body):
    """[(code, specVersion, filter)] from `eventTypes`; a binding may be a bare code."""
    items = body.array("eventTypes", required=True, min_items=1, max_items=MAX_BINDINGS)
    bindings = []
    for i, item in enumerate(items):
        binding = Fields(
            {"eventTypeCode": item} if isinstance(item, str) else item, "eventTypes[%d]" % i
        )
        code = binding.string("eventTypeCode", "code", required=True, max_length=255)
        problem = pattern_problem(code)
        if problem:
            binding.fail("eventTypeCode", problem)
        bindings.append(
            (
                code,
                binding.string("specVersion", max_length=20),
                binding.string("filter", max_length=4000),
            )
        )
    return bindings


def read_config(body):
    pairs = body.key_values("customConfig") or []
    for i, pair in enumerate(pairs):
        if not pair["key"] or len(pair["key"]) > 100:
            body.fail("customConfig[%d].key" % i, "must be 1 to 100 characters")
        if pair["value"] is not None and len(pair["value"]) > 1000:
            body.fail("customConfig[%d].value" % i, "is longer than 1000 characters")
    return [(pair["key"], pair["value"]) for pair in pairs]


def new_secret(standard):
    if standard:
        return STANDARD_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_hex(32)


def check_secret(body, row):
    """A `whsec_` secret must hold a base64 key, and Standard Webhooks needs one."""
    secret = row["signing_secret"] or ""
    if secret.startswith(STANDARD_PREFIX):
        try:
            key = base64.b64decode(secret[len(STANDARD_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            body.fail("signingSecret", "a whsec_ secret must be followed by a base64 key")
    elif row["standard_webhooks"]:
        body.fail(
            "signingSecret",
            "standardWebhooks needs a whsec_ secret (whsec_ + a base64 key); "
            "give one, or leave it out on create to have one made",
        )


def redacted(data):
    """The body as the audit log keeps it: without the secret."""
    return {k: "***" if k in ("signingSecret", "signing_secret") else v for k, v in data.items()}


# -- the store ----------------------------------------------------------------------------------


async def check_links(tx, body, row, pool_code):
    """The connection and the pool exist and belong to the subscription's client or to no
    client; `pool_code`, when given, picks the pool (the client's own before an anchor-level
    one of that code)."""
    client = row["client_id"]
    if row["connection_id"] is not None:
        found = await tx.fetchone(
            "SELECT client_id FROM msg_connections WHERE id = ?", (row["connection_id"],)
        )
        if found is None:
            body.fail("connectionId", "connection %s does not exist" % row["connection_id"])
        if found["client_id"] not in (None, client):
            body.fail("connectionId", "connection %s is another client's" % row["connection_id"])
    if pool_code is not None:
        found = await tx.fetchone(
            "SELECT id FROM msg_dispatch_pools WHERE code = ? AND (client_id = ? OR client_id IS NULL)"
            " ORDER BY client_id IS NULL LIMIT 1",
            (pool_code, client),
        )
        if found is None:
            body.fail("dispatchPoolCode", "no dispatch pool %r for this client" % pool_code)
        row["dispatch_pool_id"] = found["id"]
    elif row["dispatch_pool_id"] is not None:
        found = await tx.fetchone(
            "SELECT client_id FROM msg_dispatch_pools WHERE id = ?", (row["dispatch_pool_id"],)
        )
        if found is None:
            body.fail("dispatchPoolId", "dispatch pool %s does not exist" % row["dispatch_pool_id"])
        if found["client_id"] not in (None, client):
            body.fail(
                "dispatchPoolId", "dispatch pool %s is another client's" % row["dispatch_pool_id"]
            )


async def save_bindings(tx, subscription_id, bindings):
    """Replace the subscription's event-type bindings; an exact code that is registered
    links to its event type."""
    await tx.execute(
        "DELETE FROM msg_subscription_event_types WHERE subscription_id = ?", (subscription_id,)
    )
    codes = sorted({code for code, _, _ in bindings})
    registered = {
        row["code"]: row["id"]
        for row in await tx.fetchall(
            "SELECT id, code FROM msg_event_types WHERE code IN (%s)" % marks(len(codes)), codes
        )
    }
    await tx.insert(
        "msg_subscription_event_types",
        ("subscription_id", "event_type_id", "event_type_code", "spec_version", "filter"),
        [(subscription_id, registered.get(code), code, spec, flt) for code, spec, flt in bindings],
    )


async def save_config(tx, subscription_id, pairs):
    await tx.execute(
        "DELETE FROM msg_subscription_custom_configs WHERE subscription_id = ?",
        (subscription_id,),
    )
    if pairs:
        await tx.insert(
            "msg_subscription_custom_configs",
            ("subscription_id", "config_key", "config_value"),
            [(subscription_id, key, value) for key, value in pairs],
        )


async def load(tx, where, params):
    """Subscriptions (as JSON) matching `where` on `s`, with their bindings and config."""
    rows = await tx.fetchall(
        "SELECT s.*, p.code AS dispatch_pool_code FROM msg_subscriptions s"
        " LEFT JOIN msg_dispatch_pools p ON p.id = s.dispatch_pool_id"
        " WHERE %s ORDER BY s.created_at, s.id" % where,
        params,
    )
    bindings = await _children(tx, "msg_subscription_event_types", rows)
    configs = await _children(tx, "msg_subscription_custom_configs", rows)
    return [
        subscription_json(row, bindings.get(row["id"], ()), configs.get(row["id"], ()))
        for row in rows
    ]


async def _children(tx, table, rows):
    """{subscription id: [child rows in insertion order]} of `rows`."""
    out = {}
    ids_ = [row["id"] for row in rows]
    for start in range(0, len(ids_), 1000):
        part = ids_[start : start + 1000]
        for child in await tx.fetchall(
            "SELECT * FROM %s WHERE subscription_id IN (%s) ORDER BY id"
            % (table, marks(len(part))),
            part,
        ):
            out.setdefault(child["subscription_id"], []).append(child)
    return out


def subscription_json(row, bindings, configs):
    return {
        "id": row["id"],
        "code": row["code"],
        "name": row["name"],
        "description": row["description"],
        "clientId": row["client_id"],
        "clientIdentifier": row["client_identifier"],
        "clientScoped": bool(row["client_scoped"]),
        "applicationCode": row["application_code"],
        "eventTypes": [
            {
                "eventTypeCode": b["event_type_code"],
                "eventTypeId": b["event_type_id"],
                "specVersion": b["spec_version"],
                "filter": b["filter"],
            }
            for b in bindings
        ],
        "endpoint": row["target"],
        "connectionId": row["connection_id"],
        "queue": row["queue"],
        "customConfig": [{"key": c["config_key"], "value": c["config_value"]} for c in configs],
        "source": row["source"],
        "status": row["status"],
        "maxAgeSeconds": row["max_age_seconds"],
        "dispatchPoolId": row["dispatch_pool_id"],
        "dispatchPoolCode": row["dispatch_pool_code"],
        "delaySeconds": row["delay_seconds"],
        "sequence": row["sequence"],
        "mode": row["mode"],
        "timeoutSeconds": row["timeout_seconds"],
        "maxRetries": row["max_retries"],
        "serviceAccountId": row["service_account_id"],
        "dataOnly": bool(row["data_only"]),
        "standardWebhooks": bool(row["standard_webhooks"]),
        "hasSigningSecret": bool(row["signing_secret"]),
        "createdBy": row["created_by"],
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
    }


async def record(tx, principal, subscription_id, operation, details, client_id):
    """What every write ends with: fan-out's version moves, the audit log gets the change."""
    await bump_subscriptions(tx)
    await audit.record(tx, principal, ENTITY, subscription_id, operation, details, client_id)


# -- routes -------------------------------------------------------------------------------------


def register(api, platform):
    store = platform.store

    @platform_route(
        api,
        "GET",
        "/api/subscriptions",
        tag=TAG,
        summary="List the subscriptions the caller may see",
        permission=VIEW,
        responses={200: "SubscriptionList", 400: "Error", 401: "Error", 403: "Error"},
        query=(
            ("clientId", "string", "one client's subscriptions"),
            ("status", "string", "ACTIVE or PAUSED"),
            ("code", "string", "the subscription code"),
            ("eventTypeCode", "string", "subscriptions with a binding of exactly this code"),
            ("connectionId", "string", "subscriptions using this connection"),
            ("dispatchPoolId", "string", "subscriptions using this dispatch pool"),
        ),
    )
    async def list_subscriptions(req, principal):
        where, params = principal.client_clause("s.client_id")
        where = "1 = 1" + where
        client_id = query_str(req, "clientId")
        if client_id is not None:
            principal.require_client(client_id)
            where += " AND s.client_id = ?"
            params.append(client_id)
        status = query_str(req, "status")
        if status is not None:
            where += " AND s.status = ?"
            params.append(Fields({"status": status}).choice("status", choices=STATUSES))
        for name, column in (
            ("code", "s.code"),
            ("connectionId", "s.connection_id"),
            ("dispatchPoolId", "s.dispatch_pool_id"),
        ):
            value = query_str(req, name)
            if value is not None:
                where += " AND %s = ?" % column
                params.append(value)
        event_type = query_str(req, "eventTypeCode")
        if event_type is not None:
            where += (
                " AND s.id IN (SELECT subscription_id FROM msg_subscription_event_types"
                " WHERE event_type_code = ?)"
            )
            params.append(event_type)
        found = await store.read(load, where, params)
        return {"subscriptions": found, "total": len(found)}

    @platform_route(
        api,
        "POST",
        "/api/subscriptions",
        tag=TAG,
        summary="Create a subscription",
        permission=CREATE,
        body="CreateSubscription",
        responses={201: "Subscription", 400: "Error", 403: "Error", 409: "Error"},
    )
    async def create_subscription(req, principal):
        body = Fields(read_body(req))
        client_id = principal.default_client(body.string("clientId", max_length=17))
        code = body.string("code", required=True, max_length=100, pattern=CODE_PATTERN, lower=True)
        row = dict(DEFAULTS)
        row.update(read_columns(body))
        for name, column in (("name", "name"), ("endpoint", "target")):
            if column not in row:
                body.fail(name, "is required")
        bindings = read_bindings(body)
        config = read_config(body)
        pool_code = body.string("dispatchPoolCode", max_length=100)
        if not row.get("signing_secret"):
            row["signing_secret"] = new_secret(row["standard_webhooks"])
        check_secret(body, row)
        now = clock.now()
        row.update(
            id=ids.typed(ids.SUBSCRIPTION),
            code=code,
            client_id=client_id,
            created_by=principal.id,
            created_at=now,
            updated_at=now,
        )

        async def create(tx):
            await check_links(tx, body, row, pool_code)
            await tx.insert("msg_subscriptions", list(row), [tuple(row.values())])
            await save_bindings(tx, row["id"], bindings)
            await save_config(tx, row["id"], config)
            await record(
                tx,
                principal,
                row["id"],
                "CreateSubscriptionCommand",
                redacted(body.data),
                client_id,
            )
            return (await load(tx, "s.id = ?", [row["id"]]))[0]

        try:
            created = await store.write(create)
        except IntegrityError:
            raise conflict(
                "SUBSCRIPTION_CODE_EXISTS",
                "a subscription with code %r already exists for %s"
                % (code, "client " + client_id if client_id else "the anchor level"),
            ) from None
        created["signingSecret"] = row["signing_secret"]  # shown this once
        return Reply(201, created)

    @platform_route(
        api,
        "GET",
        "/api/subscriptions/{id}",
        tag=TAG,
        summary="One subscription",
        permission=VIEW,
        responses={200: "Subscription", 403: "Error", 404: "Error"},
    )
    async def get_subscription(req, principal, id):
        found = await store.read(load, "s.id = ?", [id])
        if not found:
            raise not_found("subscription", id)
        principal.require_client(found[0]["clientId"])
        return found[0]

    @platform_route(
        api,
        "PUT",
        "/api/subscriptions/{id}",
        tag=TAG,
        summary="Change the fields given; eventTypes and customConfig, when given, are replaced",
        permission=UPDATE,
        body="UpdateSubscription",
        responses={204: None, 400: "Error", 403: "Error", 404: "Error"},
    )
    async def update_subscription(req, principal, id):
        body = Fields(read_body(req))
        changes = read_columns(body)
        bindings = read_bindings(body) if body.has("eventTypes") else None
        config = read_config(body) if body.has("customConfig") else None
        pool_code = body.string("dispatchPoolCode", max_length=100)

        async def update(tx):
            current = await load_for_change(tx, principal, "msg_subscriptions", "subscription", id)
            immutable(body, "code", current["code"])
            immutable(body, "clientId", current["client_id"])
            if "signing_secret" in changes and changes["signing_secret"] is None:
                del changes["signing_secret"]  # null keeps the secret it has
            merged = dict(current, **changes)
            check_secret(body, merged)
            await check_links(tx, body, merged, pool_code)
            changes["dispatch_pool_id"] = merged["dispatch_pool_id"]
            changes["updated_at"] = clock.now()
            await update_columns(tx, "msg_subscriptions", id, changes)
            if bindings is not None:
                await save_bindings(tx, id, bindings)
            if config is not None:
                await save_config(tx, id, config)
            await record(
                tx,
                principal,
                id,
                "UpdateSubscriptionCommand",
                redacted(body.data),
                current["client_id"],
            )

        await store.write(update)

    @platform_route(
        api,
        "DELETE",
        "/api/subscriptions/{id}",
        tag=TAG,
        summary="Delete a subscription (its jobs stay)",
        permission=DELETE,
        responses={204: None, 403: "Error", 404: "Error"},
    )
    async def delete_subscription(req, principal, id):
        async def delete(tx):
            current = await load_for_change(tx, principal, "msg_subscriptions", "subscription", id)
            await tx.execute("DELETE FROM msg_subscriptions WHERE id = ?", (id,))
            await record(
                tx,
                principal,
                id,
                "DeleteSubscriptionCommand",
                {"code": current["code"]},
                current["client_id"],
            )

        await store.write(delete)

    for action, status, operation in (
        ("pause", PAUSED, "PauseSubscriptionCommand"),
        ("resume", ACTIVE, "ResumeSubscriptionCommand"),
    ):
        register_status_route(api, store, action, status, operation)


def register_status_route(api, store, action, status, operation):
    @platform_route(
        api,
        "POST",
        "/api/subscriptions/{id}/%s" % action,
        tag=TAG,
        summary="%s a subscription (status %s)" % (action.capitalize(), status),
        permission=UPDATE,
        responses={204: None, 403: "Error", 404: "Error"},
    )
    async def change_status(req, principal, id):
        async def change(tx):
            current = await load_for_change(tx, principal, "msg_subscriptions", "subscription", id)
            await update_columns(
                tx, "msg_subscriptions", id, {"status": status, "updated_at": clock.now()}
            )
            await record(tx, principal, id, operation, {"status": status}, current["client_id"])

        await store.write(change)
