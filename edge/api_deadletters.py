"""Dead letters: messages a queue set aside (received too often without success, or not a
valid pointer). List them, put them back on their queue, or delete them.

  GET    /api/dead-letters?queue=&limit=&offset=   oldest first, all queues or one
  POST   /api/dead-letters/replay                  {"queue"?, "messageIds"?}: all, or those
  POST   /api/dead-letters/{id}/replay?queue=      one
  DELETE /api/dead-letters?queue=                  all (of one queue)
  DELETE /api/dead-letters/{id}?queue=             one

A replayed message goes to the end of its queue with a fresh receive count. A dead letter
stays one when a message with its id is still on the queue, or when its payload is not a
valid pointer. docs/edge-api.md gives the shapes.
"""

from flowcatalyst.core.log import logger

from .api_common import (
    ApiError,
    bad_request,
    int_arg,
    json_response,
    path_arg,
    queue_or_404,
    read_object,
    route,
)

PAGE = 1000

_log = logger("api")


def register(app, edge):
    def selected(name):
        """[(name, queue)] for `?queue=` (or a body's queue), all queues when absent."""
        if name:
            return [queue_or_404(edge, name)]
        return list(edge.queues.items())

    async def find(queues, message_id):
        """The queue names holding a dead letter with this id."""
        holders = []
        for name, queue in queues:
            offset = 0
            while True:
                page = await queue.list_dead_letters(PAGE, offset)
                if any(d.message.id == message_id for d in page):
                    holders.append(name)
                    break
                if len(page) < PAGE:
                    break
                offset += PAGE
        return holders

    @route(app, "/api/dead-letters")
    async def list_dead_letters(req):
        limit = int_arg(req, "limit", 100, 1, 10000)
        offset = int_arg(req, "offset", 0, 0)
        queues = selected(req.args.get("queue"))
        letters = []
        total = 0
        for name, queue in queues:
            for d in await queue.list_dead_letters(limit + offset, 0):
                item = d.to_dict()
                item["queue"] = name
                letters.append(item)
            metrics = await queue.metrics()
            total += (metrics or {}).get("dead_lettered", 0)
        letters.sort(key=lambda d: d["deadAt"])
        return json_response({"deadLetters": letters[offset : offset + limit], "total": total, "limit": limit, "offset": offset})

    @route(app, "/api/dead-letters/replay", methods=("POST",))
    async def replay(req):
        body = read_object(req, required=False) or {}
        ids = body.get("messageIds")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise bad_request("messageIds must be an array of strings")
        name = body.get("queue") or req.args.get("queue")
        if name is not None and not isinstance(name, str):
            raise bad_request("queue must be a string")
        replayed = {}
        for queue_name, queue in selected(name):
            replayed[queue_name] = await queue.replay_dead_letters(ids)
        count = sum(replayed.values())
        _log.info("dead letters replayed through the API", count=count, queues=replayed, messageIds=ids)
        return json_response({"replayed": count, "queues": replayed})

    @route(app, "/api/dead-letters/<path:message_id>/replay", methods=("POST",))
    async def replay_one(req, message_id):
        message_id = path_arg(message_id)
        queues = selected(req.args.get("queue"))
        count = 0
        for _, queue in queues:
            count += await queue.replay_dead_letters([message_id])
        if not count:
            if await find(queues, message_id):
                raise ApiError(
                    409,
                    "not_replayed",
                    "dead letter %r stays: a message with its id is still on the queue, or its payload is not a valid pointer" % message_id,
                )
            raise ApiError(404, "not_found", "no dead letter with id %r" % message_id)
        _log.info("dead letter replayed through the API", messageId=message_id)
        return json_response({"replayed": count, "messageId": message_id})

    @route(app, "/api/dead-letters", methods=("DELETE",))
    async def delete_all(req):
        deleted = {}
        for name, queue in selected(req.args.get("queue")):
            deleted[name] = await queue.delete_dead_letters()
        count = sum(deleted.values())
        _log.info("dead letters deleted through the API", count=count, queues=deleted)
        return json_response({"deleted": count, "queues": deleted})

    @route(app, "/api/dead-letters/<path:message_id>", methods=("DELETE",))
    async def delete_one(req, message_id):
        message_id = path_arg(message_id)
        count = 0
        for _, queue in selected(req.args.get("queue")):
            count += await queue.delete_dead_letters([message_id])
        if not count:
            raise ApiError(404, "not_found", "no dead letter with id %r" % message_id)
        _log.info("dead letter deleted through the API", messageId=message_id)
        return json_response({"deleted": count, "messageId": message_id})
