"""Events (spec/platform.md §3.2): publish one, publish a batch, list, get.

Publishing writes `msg_events` only and wakes the stream processor, which fans the event out
to subscriptions and projects it into `msg_events_read` (the list reads that). A
`deduplicationId` makes a publish idempotent per client: the second one answers with the
first event.

The batch answers one result per item, in order. Unlike the existing platforms, a bad item
does not fail the whole request: it gets `BAD_REQUEST` (or `FORBIDDEN`) with the reason and
the field, and the good items are stored — the statuses the outbox processor understands
(spec §5.2).
"""

from flowcatalyst.core import jsoncodec

from . import clock, ids
from .errors import PlatformError, not_found
from .matching import code_problem
from .routes import Reply, list_filters, list_page, platform_route, query_str, read_body
from .validate import Fields, batch_results

MAX_BATCH = 1000
CREATE = ("platform:messaging:batch:events-write", "platform:application-service:event:create")
VIEW = "platform:messaging:event:view"

COLUMNS = (
    "id", "spec_version", "type", "source", "subject", "time", "data", "correlation_id",
    "causation_id", "deduplication_id", "message_group", "client_id", "context_data", "created_at",
)  # fmt: skip

EVENT_ITEM = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "description": "event type code app:subdomain:aggregate:event (also eventType)"},
        "source": {"type": "string"},
        "subject": {"type": "string"},
        "data": {"description": "any JSON; a string holding JSON is parsed"},
        "time": {"type": "string", "format": "date-time"},
        "specVersion": {"type": "string"},
        "messageGroup": {"type": "string"},
        "correlationId": {"type": "string"},
        "causationId": {"type": "string"},
        "deduplicationId": {"type": "string"},
        "clientId": {"type": "string"},
        "contextData": {"type": "array", "items": {"type": "object"}},
    },
}  # fmt: skip

SCHEMAS = {
    "EventCreate": EVENT_ITEM,
    "EventBatch": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "maxItems": MAX_BATCH, "items": EVENT_ITEM}},
    },
    "Event": {
        "type": "object",
        "properties": {
            name: {"type": "string"}
            for name in (
                "id",
                "specVersion",
                "type",
                "source",
                "subject",
                "time",
                "messageGroup",
                "correlationId",
                "causationId",
                "deduplicationId",
                "clientId",
                "createdAt",
            )
        },
    },  # fmt: skip
    "EventCreated": {
        "type": "object",
        "properties": {
            "event": {"$ref": "#/components/schemas/Event"},
            "dispatchJobCount": {"type": "integer"},
            "isDuplicate": {"type": "boolean"},
        },
    },
    "BatchResults": {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": ["SUCCESS", "BAD_REQUEST", "FORBIDDEN"],
                        },
                        "error": {"type": "string"},
                        "field": {"type": "string"},
                        "duplicate": {"type": "boolean"},
                    },
                },
            }
        },
    },  # fmt: skip
    "EventRead": {"type": "object", "description": "an event from the read model"},
}


def parse_event(principal, data, where=""):
    """A msg_events row (dict) from one request item; PlatformError naming the field."""
    item = Fields(data, where)
    code = item.string("type", "eventType", "event_type", required=True, max_length=200)
    problem = code_problem(code)
    if problem:
        item.fail("type", problem)
    present, payload = item.raw("data")
    if isinstance(payload, str):
        # the SDKs' outbox rows carry data as a JSON string: deliver the object it holds
        try:
            payload = jsoncodec.loads(payload)
        except ValueError:
            pass
    context = item.key_values("contextData")
    now = clock.now()
    return {
        "id": ids.tsid(),
        "spec_version": item.string("specVersion", default="1.0", max_length=20),
        "type": code,
        "source": item.string("source", default="", max_length=500, allow_empty=True),
        "subject": item.string("subject", max_length=500),
        "time": item.timestamp("time", default=now),
        "data": jsoncodec.dumps(payload if present else None),
        "correlation_id": item.string("correlationId", max_length=100),
        "causation_id": item.string("causationId", max_length=100),
        "deduplication_id": item.string("deduplicationId", max_length=200),
        "message_group": item.string("messageGroup", max_length=200),
        "client_id": principal.default_client(item.string("clientId", max_length=17)),
        "context_data": jsoncodec.dumps(context) if context is not None else None,
        "created_at": now,
    }


async def insert_events(tx, events):
    """Insert `events`; for each, (id, duplicate): an event whose deduplication id (per
    client) exists already is not stored and answers with the existing event's id."""
    rows = [tuple(e[c] for c in COLUMNS) for e in events]
    inserted = {
        r["id"]
        for r in await tx.insert("msg_events", COLUMNS, rows, "ON CONFLICT DO NOTHING RETURNING id")
    }
    out = []
    for event in events:
        if event["id"] in inserted:
            out.append((event["id"], False))
            continue
        existing = await tx.fetchone(
            "SELECT id FROM msg_events WHERE deduplication_id = ? AND COALESCE(client_id, '') = ?",
            (event["deduplication_id"], event["client_id"] or ""),
        )
        if existing is None:  # only the deduplication index can refuse a fresh id
            raise PlatformError(409, "CONFLICT", "event %s could not be stored" % event["id"])
        out.append((existing["id"], True))
    return out


def event_json(row):
    out = {
        "id": row["id"],
        "specVersion": row["spec_version"],
        "type": row["type"],
        "source": row["source"],
        "subject": row["subject"],
        "time": row["time"],
        "data": jsoncodec.loads(row["data"]) if row["data"] is not None else None,
        "messageGroup": row["message_group"],
        "correlationId": row["correlation_id"],
        "causationId": row["causation_id"],
        "deduplicationId": row["deduplication_id"],
        "clientId": row["client_id"],
        "contextData": jsoncodec.loads(row["context_data"]) if row["context_data"] else None,
        "createdAt": row["created_at"],
    }
    out["eventType"] = out["type"]  # RS's name for it
    return out


def event_read_json(row):
    return {
        "id": row["id"],
        "type": row["type"],
        "source": row["source"],
        "subject": row["subject"],
        "time": row["time"],
        "application": row["application"],
        "subdomain": row["subdomain"],
        "aggregate": row["aggregate"],
        "messageGroup": row["message_group"],
        "correlationId": row["correlation_id"],
        "clientId": row["client_id"],
        "projectedAt": row["projected_at"],
    }


def register(api, platform):
    store = platform.store

    def published(count):
        if count:
            platform.signals.wake("fan-out")
            platform.signals.wake("events-projection")

    @platform_route(
        api,
        "POST",
        "/api/events",
        summary="Publish one event",
        tag="Events",
        permission=CREATE,
        body="EventCreate",
        responses={201: "EventCreated", 200: "EventCreated", 400: "Error", 403: "Error"},
        description="201 with the stored event; 200 with the earlier event when its "
        "deduplicationId (per client) was seen before.",
    )
    async def create_event(req, principal):
        event = parse_event(principal, read_body(req))
        ((event_id, duplicate),) = await store.write(insert_events, [event])
        published(0 if duplicate else 1)
        if duplicate:  # the answer is the first event, as stored
            event = await store.fetchone("SELECT * FROM msg_events WHERE id = ?", (event_id,))
        body = {"event": event_json(event), "dispatchJobCount": 0, "isDuplicate": duplicate}
        return Reply(200 if duplicate else 201, body)

    @platform_route(
        api,
        "POST",
        "/api/events/batch",
        summary="Publish events in a batch",
        tag="Events",
        permission=CREATE,
        body="EventBatch",
        responses={200: "BatchResults", 400: "Error"},
        description="One result per item, in order: SUCCESS (with the event id; "
        "`duplicate: true` for a repeated deduplicationId), or BAD_REQUEST / FORBIDDEN with "
        "the reason. Good items are stored even when others are not.",
    )
    async def create_batch(req, principal):
        items = Fields(read_body(req)).array("items", "events", required=True, max_items=MAX_BATCH)
        results = batch_results(items, lambda item, where: parse_event(principal, item, where))
        events = [r for r in results if isinstance(r, dict)]
        stored = iter(await store.write(insert_events, events) if events else ())
        published(len(events))
        out = []
        for result in results:
            if isinstance(result, dict):
                event_id, duplicate = next(stored)
                entry = {"id": event_id, "status": "SUCCESS"}
                if duplicate:
                    entry["duplicate"] = True
                out.append(entry)
            else:
                out.append(result.item_result())
        return {"results": out}

    @platform_route(
        api,
        "GET",
        "/api/events",
        summary="List events (read model), newest first",
        tag="Events",
        permission=VIEW,
        responses={200: "EventRead", 400: "Error"},
        query=(
            ("size", "integer", "page size, 1..1000 (default 50)"),
            ("cursor", "string", "from X-Next-Cursor of the previous page"),
            ("types", "string", "CSV of event type codes"),
            ("applications", "string", "CSV"),
            ("subdomains", "string", "CSV"),
            ("aggregates", "string", "CSV"),
            ("clientIds", "string", "CSV"),
            ("correlationId", "string", "exact"),
            ("source", "string", "text in type, source or subject"),
        ),
    )
    async def list_events(req, principal):
        where, params, scope, scope_params = list_filters(
            req,
            principal,
            (
                ("types", "type"),
                ("applications", "application"),
                ("subdomains", "subdomain"),
                ("aggregates", "aggregate"),
                ("correlationId", "correlation_id"),
            ),
        )
        text = query_str(req, "source")
        if text:
            where.append("(type LIKE ? OR source LIKE ? OR subject LIKE ?)")
            params.extend(["%" + text + "%"] * 3)
        return await list_page(
            req,
            store,
            "msg_events_read",
            "time",
            where,
            params,
            scope,
            scope_params,
            event_read_json,
        )

    @platform_route(
        api,
        "GET",
        "/api/events/{id}",
        summary="One event",
        tag="Events",
        permission=VIEW,
        responses={200: "Event", 403: "Error", 404: "Error"},
    )
    async def get_event(req, principal, id):
        row = await store.fetchone("SELECT * FROM msg_events WHERE id = ?", (id,))
        if row is None:
            raise not_found("event", id)
        principal.require_client(row["client_id"])
        return event_json(row)
