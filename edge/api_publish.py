"""Publishing over HTTP: `POST /api/messages`, the RS compatibility route `POST /messages` and
the seed route `POST /api/seed/messages` (router spec §9.2, §11).

`POST /api/messages` takes one message pointer, or `{"messages": [...], "queue": ...}` with 1
to 1000 of them. Every item is parsed first; the invalid ones are answered INVALID with the
field and the reason and never stored; the valid ones go into the queue in one transaction,
committed before the answer (ACCEPTED, or DUPLICATE when the id was seen within the queue's
deduplication window). docs/edge-api.md gives the shapes and status codes.
"""

import binascii

from flowcatalyst.core.compat import uuid4
from flowcatalyst.core.log import logger
from flowcatalyst.core.message import MessageError, parse_message

from .api_common import (
    ApiError,
    bad_request,
    json_response,
    queue_or_404,
    read_json,
    read_object,
    route,
)
from .sqlstore import StoreError

MAX_BATCH = 1000
MAX_SEED = 1000
DEFAULT_SEED = 10

# seed `endpoint` → mock target (RS; the last four are additions); anything else → fast
SEED_ENDPOINTS = {
    "fast": "fast",
    "slow": "slow",
    "faulty": "faulty",
    "random": "faulty",
    "fail": "fail",
    "success": "success",
    "pending": "pending",
    "client-error": "client-error",
    "server-error": "server-error",
}

# pointer field → the snake_case name of POST /messages
_SNAKE = {"poolCode": "pool_code", "messageGroupId": "message_group_id", "mediationTarget": "mediation_target", "id": "id"}

_log = logger("api")


def register(app, edge):
    counted = edge.router.metrics.registry.counter(
        "fc_api_messages_published_total", "Messages offered through the HTTP API, by result", ("queue", "status")
    )

    async def store(queue, messages):
        try:
            return await queue.publish_batch([(m, None) for m in messages])
        except StoreError as e:
            raise ApiError(503, "store_unavailable", "the queue database cannot take messages now: %s" % e) from e

    @route(app, "/api/messages", methods=("POST",))
    async def publish(req):
        body = read_json(req)
        if not isinstance(body, dict):
            raise bad_request('the body must be a message pointer or {"messages": [...]}')
        single = "messages" not in body
        items = [body] if single else body["messages"]
        if not isinstance(items, list):
            raise bad_request("messages must be an array of message pointers")
        if not items:
            raise bad_request("messages is empty: send 1 to %d message pointers" % MAX_BATCH)
        if len(items) > MAX_BATCH:
            raise ApiError(400, "too_many_messages", "at most %d messages per request, got %d" % (MAX_BATCH, len(items)))
        name, queue = queue_or_404(edge, _queue_name(req, body))

        results = [None] * len(items)
        valid = []
        for i, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise MessageError("", "a message pointer must be a JSON object")
                valid.append((i, parse_message(item)))
            except MessageError as e:
                results[i] = {"index": i, "id": _id_of(item), "status": "INVALID", "field": e.field or None, "reason": e.reason}
                _log.warn("invalid message refused", queue=name, index=i, messageId=_id_of(item), field=e.field, reason=e.reason)
        published = await store(queue, [m for _, m in valid]) if valid else []
        for (i, message), result in zip(valid, published, strict=True):
            results[i] = {"index": i, "id": message.id, "status": result.status}
            _log.debug("message published", queue=name, messageId=message.id, pool=message.pool_code, group=message.message_group_id, status=result.status)

        totals = {"ACCEPTED": 0, "DUPLICATE": 0, "INVALID": 0}
        for r in results:
            totals[r["status"]] += 1
        for status in totals:
            if totals[status]:
                counted.inc((name, status), totals[status])
        _log.info("messages published", queue=name, accepted=totals["ACCEPTED"], duplicates=totals["DUPLICATE"], invalid=totals["INVALID"])
        out = {"queue": name, "accepted": totals["ACCEPTED"], "duplicates": totals["DUPLICATE"], "invalid": totals["INVALID"], "results": results}
        if single and totals["INVALID"]:
            r = results[0]
            message = "%s: %s" % (r["field"], r["reason"]) if r["field"] else r["reason"]
            out = dict({"error": "invalid_message", "message": message}, **out)
            return json_response(out, 400)
        return json_response(out)

    @route(app, "/messages", methods=("POST",))
    async def publish_payload(req):
        body = read_object(req)
        if "payload" not in body:
            raise bad_request("payload is required: it is the body POSTed to mediation_target")
        if not body.get("mediation_target"):
            raise bad_request("mediation_target is required: the URL the payload is POSTed to")
        pointer = {
            "id": uuid4(),
            "poolCode": body.get("pool_code") or "",
            "mediationType": "HTTP",
            "mediationTarget": body["mediation_target"],
            "messageGroupId": body.get("message_group_id"),
            "dispatchMode": "IMMEDIATE",
            "payload": body["payload"],
        }
        try:
            message = parse_message(pointer)
        except MessageError as e:
            field = _SNAKE.get(e.field, e.field)
            raise ApiError(400, "invalid_message", "%s: %s" % (field, e.reason), field=field, reason=e.reason) from None
        name, queue = queue_or_404(edge, _queue_name(req, body))
        try:
            [result] = await queue.publish_batch([(message, None)])
        except StoreError as e:
            raise ApiError(503, "Failed to publish message", "the queue database cannot take messages now: %s" % e) from e
        counted.inc((name, result.status))
        _log.info("message published", queue=name, messageId=message.id, pool=message.pool_code, group=message.message_group_id)
        return json_response({"message_id": message.id, "status": result.status})

    @route(app, "/api/seed/messages", methods=("POST",))
    async def seed(req):
        body = read_object(req, required=False) or {}
        count = body.get("count", DEFAULT_SEED)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SEED:
            raise bad_request("count must be an integer from 1 to %d" % MAX_SEED)
        name, queue = queue_or_404(edge, _queue_name(req, body))
        endpoint = body.get("endpoint") or "fast"
        if not isinstance(endpoint, str):
            raise bad_request("endpoint must be a string")
        extra = {}
        if endpoint.lower().startswith(("http://", "https://")):
            target = endpoint
        else:
            target = "%s/api/test/%s" % (own_url(edge), SEED_ENDPOINTS.get(endpoint.lower(), "fast"))
            extra = own_credentials(edge.settings)  # the mock targets sit behind the API's auth
        mode = body.get("messageGroupMode", "1of8")
        pointers = []
        for i in range(count):
            pointer = {
                "id": uuid4(),
                "poolCode": body.get("poolCode") or "",
                "mediationType": "HTTP",
                "mediationTarget": target,
                "messageGroupId": _seed_group(mode, i),
                "dispatchMode": body.get("dispatchMode") or "IMMEDIATE",
            }
            pointer.update(extra)
            pointers.append(pointer)
        try:
            messages = [parse_message(p) for p in pointers]
        except MessageError as e:
            raise ApiError(400, "invalid_message", "seed messages would be invalid: %s" % e, field=e.field, reason=e.reason) from None
        results = await store(queue, messages)
        sent = sum(1 for r in results if r.accepted)
        counted.inc((name, "ACCEPTED"), sent)
        _log.info("seed messages published", queue=name, count=sent, target=target)
        return json_response({"status": "success", "messagesSent": sent, "totalRequested": count, "queue": name, "target": target})


def _queue_name(req, body):
    """The queue named by the body's `queue` or the `?queue=` parameter (None: default)."""
    in_body = body.get("queue")
    if in_body is not None and not isinstance(in_body, str):
        raise bad_request("queue must be a string")
    in_query = req.args.get("queue") or None
    if in_body and in_query and in_body != in_query:
        raise bad_request("queue %r in the body and %r in the query differ" % (in_body, in_query))
    return in_body or in_query


def _id_of(item):
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        return item["id"]
    return None


def _seed_group(mode, i):
    if mode == "unique":
        return "unique-" + uuid4()
    if mode == "1of8":
        return "group-%d" % (i % 8)
    if mode == "single":
        return "single-group"
    return None


def own_url(edge):
    """This edge's API as the edge itself can reach it: its real port, http or https."""
    host = edge.settings.host
    if host in ("", "0.0.0.0", "::", "localhost"):
        host = "127.0.0.1"
    elif ":" in host:
        host = "[%s]" % host
    return "%s://%s:%d" % ("https" if edge.settings.tls_cert else "http", host, edge.port)


def own_credentials(settings):
    """Pointer fields that get a delivery through this edge's own authentication."""
    if settings.auth_mode == "TOKEN" and settings.api_token:
        return {"authToken": settings.api_token}
    if settings.auth_mode == "BASIC" and settings.basic_username:
        pair = ("%s:%s" % (settings.basic_username, settings.basic_password or "")).encode()
        return {"headers": {"Authorization": "Basic " + binascii.b2a_base64(pair, newline=False).decode()}}
    return {}
