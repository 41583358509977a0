"""Writing outbox rows from the application (spec/platform.md §1.10, §2.6, §5.6): on the
application's own DB-API connection, inside its own transaction, so a row exists exactly when
the business change it belongs to commits. The helpers never commit or roll back.

    with conn:  # sqlite3: commits when the block succeeds, rolls back when it raises
        conn.execute("UPDATE orders SET state = 'shipped' WHERE id = ?", (order_id,))
        write_event(conn, "shop:orders:order:shipped", {"orderId": order_id},
                    source="shop", message_group="order-" + order_id)

A row's payload is the item the platform's batch endpoint takes (api_events.parse_event,
api_jobs.parse_job, api_audit.read_item): JSON text, camelCase, nulls omitted; the outbox
processor forwards it as it is (§5.1). Arguments are checked here against the platform's
rules, so the processor is not refused later with BAD_REQUEST (which, under block-on-error,
would hold the row's message group).

Order: created_at comes from Python, not from the database's clock, and strictly increases
within the process (a microsecond is added when the clock has not moved), so the processor
forwards a message group's rows in the order they were written. A dispatch job carries the
row's id as its `id`, so a job sent twice (a lost response) is stored once.
"""

import json
import threading
from datetime import datetime, timedelta, timezone
from time import time_ns
from urllib.parse import urlsplit

from flowcatalyst.server.platform import clock, ids, jobstate
from flowcatalyst.server.platform.matching import code_problem

from . import dbapi, schema

COLUMNS = (
    "id", "type", "message_group", "payload", "status", "retry_count",
    "created_at", "updated_at", "client_id", "payload_size",
)  # fmt: skip
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_GROUP = 200  # the platform's limit on messageGroup (the column holds 255)

_clock_lock = threading.Lock()
_last_micros = 0


def _next_moment():
    """Now (UTC, aware), later than the moment this function last returned."""
    global _last_micros
    with _clock_lock:
        micros = time_ns() // 1000
        _last_micros = micros if micros > _last_micros else _last_micros + 1
        return EPOCH + timedelta(microseconds=_last_micros)


def write_event(
    conn,
    type,
    data,
    *,
    source=None,
    subject=None,
    time=None,
    message_group=None,
    correlation_id=None,
    causation_id=None,
    deduplication_id=None,
    client_id=None,
    context_data=None,
    table=schema.DEFAULT_TABLE,
):
    """Write an EVENT row; its id. `type` is an event-type code app:subdomain:aggregate:event;
    `data` any JSON value, sent as JSON (pass the object, not its JSON text: the platform
    parses a string that holds JSON, as the older SDKs stringify data); `time` when it
    happened (default: now, not when the processor forwards it); `context_data` a dict or a
    list of {key, value}."""
    dialect = dbapi.dialect_of(conn)
    problem = code_problem(type)
    if problem:
        raise ValueError("event type: " + problem)
    _text("type", type, 200)
    moment = _next_moment()
    payload = {
        "specVersion": "1.0",
        "type": type,
        "source": _text("source", source, 500),
        "subject": _text("subject", subject, 500),
        "time": _timestamp("time", time) or moment.strftime(clock.FORMAT),
        "data": data,
        "correlationId": _text("correlation_id", correlation_id, 100),
        "causationId": _text("causation_id", causation_id, 100),
        "deduplicationId": _text("deduplication_id", deduplication_id, 200),
        "messageGroup": _text("message_group", message_group, MAX_GROUP),
        "clientId": _text("client_id", client_id, 17),
        "contextData": _key_values("context_data", context_data),
    }
    return _insert(
        conn, dialect, table, schema.EVENT, ids.tsid(), moment, payload, "data",
        message_group, client_id,
    )  # fmt: skip


def write_dispatch_job(
    conn,
    code,
    target_url,
    payload,
    *,
    source=None,
    kind=None,
    subject=None,
    event_id=None,
    correlation_id=None,
    payload_content_type=None,
    data_only=None,
    mode=None,
    sequence=None,
    timeout_seconds=None,
    max_retries=None,
    idempotency_key=None,
    external_id=None,
    metadata=None,
    service_account_id=None,
    subscription_id=None,
    connection_id=None,
    dispatch_pool_id=None,
    message_group=None,
    client_id=None,
    table=schema.DEFAULT_TABLE,
):
    """Write a DISPATCH_JOB row (a webhook call for the platform to make); its id, which is
    also the job's id on the platform. `payload` is the request body: a string as it is, any
    other JSON value as its JSON text. `mode` IMMEDIATE | NEXT_ON_ERROR | BLOCK_ON_ERROR,
    `kind` EVENT | TASK, `metadata` a dict or a list of {key, value}."""
    dialect = dbapi.dialect_of(conn)
    if payload is None:
        raise ValueError("payload is required (the body the job delivers)")
    row_id = ids.tsid()
    item = {
        "id": row_id,
        "code": _text("code", code, 200, required=True),
        "targetUrl": _url("target_url", target_url),
        "payload": payload if isinstance(payload, str) else _json("payload", payload),
        "payloadContentType": _text("payload_content_type", payload_content_type, 100),
        "dataOnly": _boolean("data_only", data_only),
        "source": _text("source", source, 500),
        "kind": _choice("kind", kind, ("EVENT", "TASK"), str.upper),
        "subject": _text("subject", subject, 500),
        "eventId": _text("event_id", event_id, 13),
        "correlationId": _text("correlation_id", correlation_id, 100),
        "mode": _choice("mode", mode, jobstate.MODES, jobstate.parse_mode),
        "sequence": _integer("sequence", sequence),
        "timeoutSeconds": _integer("timeout_seconds", timeout_seconds, 1, 900),
        "maxRetries": _integer("max_retries", max_retries, 1, 100),
        "idempotencyKey": _text("idempotency_key", idempotency_key, 100),
        "externalId": _text("external_id", external_id, 100),
        "metadata": _key_values("metadata", metadata),
        "serviceAccountId": _text("service_account_id", service_account_id, 17),
        "subscriptionId": _text("subscription_id", subscription_id, 17),
        "connectionId": _text("connection_id", connection_id, 17),
        "dispatchPoolId": _text("dispatch_pool_id", dispatch_pool_id, 17),
        "messageGroup": _text("message_group", message_group, MAX_GROUP),
        "clientId": _text("client_id", client_id, 17),
    }
    return _insert(
        conn, dialect, table, schema.DISPATCH_JOB, row_id, _next_moment(), item, "payload",
        message_group, client_id,
    )  # fmt: skip


def write_audit_log(
    conn,
    entity_type,
    entity_id,
    operation,
    *,
    operation_data=None,
    principal_id=None,
    performed_at=None,
    application_code=None,
    client_id=None,
    message_group=None,
    table=schema.DEFAULT_TABLE,
):
    """Write an AUDIT_LOG row; its id. `operation_data` any JSON value; `performed_at` an
    aware datetime or RFC 3339 text (default: now)."""
    dialect = dbapi.dialect_of(conn)
    moment = _next_moment()
    payload = {
        "entityType": _text("entity_type", entity_type, 100, required=True),
        "entityId": _text("entity_id", entity_id, 100, required=True),
        "operation": _text("operation", operation, 100, required=True),
        "operationData": operation_data,
        "principalId": _text("principal_id", principal_id, 100),
        "performedAt": _timestamp("performed_at", performed_at) or moment.strftime(clock.FORMAT),
        "applicationCode": _text("application_code", application_code, 100),
        "clientCode": _text("client_id", client_id, 100),  # the platform's client id
    }
    _text("message_group", message_group, MAX_GROUP)  # the row's, not part of the log
    return _insert(
        conn, dialect, table, schema.AUDIT_LOG, ids.tsid(), moment, payload, "operation_data",
        message_group, client_id,
    )  # fmt: skip


def create_table(conn, table=schema.DEFAULT_TABLE):
    """Create the outbox table and its indexes unless they exist (schema.create_table_sql).
    No commit here; but MySQL / MariaDB commit any open transaction at each DDL statement."""
    dialect = dbapi.dialect_of(conn)
    cursor = conn.cursor()
    try:
        for statement in schema.create_table_sql(dialect, table):
            try:
                cursor.execute(statement)
            except Exception as e:
                # MySQL 8 has no CREATE INDEX IF NOT EXISTS: 1061 is "Duplicate key name"
                if not (dialect == schema.MYSQL and e.args[:1] == (1061,)):
                    raise
    finally:
        cursor.close()


def _insert(conn, dialect, table, kind, row_id, moment, item, json_argument, group, client_id):
    """Insert one PENDING row whose payload is `item` without its None fields; its id.
    `json_argument` names the caller's argument to blame when the item is not JSON."""
    schema.check_table(table)
    text = _json(json_argument, {k: v for k, v in item.items() if v is not None})
    stamp = dbapi.timestamp(dialect, moment)
    values = (
        row_id, kind, group, text, schema.PENDING, 0, stamp, stamp,
        client_id, len(text.encode("utf-8")),
    )  # fmt: skip
    sql = "INSERT INTO %s (%s) VALUES (%s)" % (
        table,
        ", ".join(COLUMNS),
        dbapi.marks(dialect, len(COLUMNS)),
    )
    cursor = conn.cursor()
    try:
        cursor.execute(sql, values)
    finally:
        cursor.close()
    return row_id


def _json(name, value):
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError("%s is not JSON-serialisable: %s" % (name, e)) from None


def _text(name, value, max_length, required=False):
    if value is None:
        if required:
            raise ValueError("%s is required" % name)
        return None
    if not isinstance(value, str):
        raise ValueError("%s must be a string, got %s" % (name, _kind(value)))
    if required and not value.strip():
        raise ValueError("%s must not be empty" % name)
    if len(value) > max_length:
        raise ValueError("%s is longer than %d characters" % (name, max_length))
    return value


def _integer(name, value, minimum=None, maximum=None):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("%s must be an integer, got %s" % (name, _kind(value)))
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError("%s must be between %d and %d, got %d" % (name, minimum, maximum, value))
    return value


def _boolean(name, value):
    if value is not None and not isinstance(value, bool):
        raise ValueError("%s must be True or False, got %s" % (name, _kind(value)))
    return value


def _choice(name, value, choices, parse):
    if value is None:
        return None
    parsed = parse(value) if isinstance(value, str) else None
    if parsed not in choices:
        raise ValueError("%s must be one of %s, got %r" % (name, ", ".join(choices), value))
    return parsed


def _url(name, value):
    """An absolute http(s) URL with a host, as the platform takes a webhook target."""
    _text(name, value, 500, required=True)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise ValueError("%s %r is not a URL: %s" % (name, value, e)) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "%s must be an http:// or https:// URL with a host, got %r" % (name, value)
        )
    if any(ch.isspace() for ch in value):
        raise ValueError("%s must not contain white space" % name)
    return value


def _timestamp(name, value):
    """RFC 3339 UTC text (six fraction digits) of an aware datetime or a timestamp string."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("%s must be timezone-aware (e.g. datetime.now(timezone.utc))" % name)
        return value.astimezone(timezone.utc).strftime(clock.FORMAT)
    try:
        return clock.parse(value)
    except ValueError as e:
        raise ValueError("%s: %s" % (name, e)) from None


def _key_values(name, value):
    """[{key, value}] from a dict or a list of {key, value}; values as strings, as the
    platform keeps them."""
    if value is None:
        return None
    pairs = value.items() if isinstance(value, dict) else None
    if pairs is None:
        if not isinstance(value, (list, tuple)):
            raise ValueError("%s must be a dict or a list of {key, value}" % name)
        pairs = []
        for i, pair in enumerate(value):
            if not isinstance(pair, dict) or "key" not in pair:
                raise ValueError("%s[%d] must be a dict with a key" % (name, i))
            pairs.append((pair["key"], pair.get("value")))
    out = []
    for key, item in pairs:
        if not isinstance(key, str):
            raise ValueError("%s: key %r must be a string" % (name, key))
        out.append(
            {"key": key, "value": item if item is None or isinstance(item, str) else str(item)}
        )
    return out


def _kind(value):
    return type(value).__name__
