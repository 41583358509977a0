"""A webhook receiver for trying the platform without a service of your own (dev mode):
`POST /dev/webhooks` (or `/dev/webhooks/<name>`) answers 200 `{"ack": true}` and keeps the
request; `GET /dev/webhooks` lists the last 100, newest first, with headers, body and whether
the X-FLOWCATALYST-SIGNATURE verifies with the secret of the subscription named in
X-FlowCatalyst-Subscription-Id (null when the subscription has no secret); `DELETE` empties
the list. Nothing is stored on disk."""

import collections

from flowcatalyst.core import jsoncodec
from flowcatalyst.core.signing import verify

from . import clock
from .routes import PUBLIC, platform_route

KEEP = 100

SCHEMAS = {
    "ReceivedWebhook": {
        "type": "object",
        "properties": {
            "receivedAt": {"type": "string", "format": "date-time"},
            "path": {"type": "string"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "body": {"description": "the body as JSON, or as text when it is not JSON"},
            "signatureValid": {"type": ["boolean", "null"]},
        },
    },
    "ReceivedWebhooks": {
        "type": "array",
        "items": {"$ref": "#/components/schemas/ReceivedWebhook"},
    },
    "Ack": {"type": "object", "properties": {"ack": {"type": "boolean"}}},
}


def register(api, platform):
    received = collections.deque(maxlen=KEEP)

    async def receive(req):
        body = req.body or b""
        headers = {k: v for k, v in req.headers.items()}
        subscription_id = req.headers.get("X-FlowCatalyst-Subscription-Id")
        valid = None
        if subscription_id:
            row = await platform.store.fetchone(
                "SELECT signing_secret FROM msg_subscriptions WHERE id = ?", (subscription_id,)
            )
            secret = row and row["signing_secret"]
            if secret:
                valid = verify(
                    secret,
                    body,
                    req.headers.get("X-FLOWCATALYST-SIGNATURE", ""),
                    req.headers.get("X-FLOWCATALYST-TIMESTAMP", ""),
                )
        try:
            shown = jsoncodec.loads(body) if body else None
        except (ValueError, UnicodeError):
            shown = body.decode("utf-8", "replace")
        received.appendleft(
            {
                "receivedAt": clock.now(),
                "path": req.path,
                "headers": headers,
                "body": shown,
                "signatureValid": valid,
            }
        )
        return {"ack": True}

    @platform_route(
        api,
        "POST",
        "/dev/webhooks",
        tag="Developer",
        summary="Receive a webhook (dev mode)",
        responses={200: "Ack"},
        auth=PUBLIC,
    )
    async def receive_webhook(req, principal):
        return await receive(req)

    @platform_route(
        api,
        "POST",
        "/dev/webhooks/{name}",
        tag="Developer",
        summary="Receive a webhook at a name of your choice (dev mode)",
        responses={200: "Ack"},
        auth=PUBLIC,
    )
    async def receive_named_webhook(req, principal, name):
        return await receive(req)

    @platform_route(
        api,
        "GET",
        "/dev/webhooks",
        tag="Developer",
        summary="The webhooks received, newest first (dev mode)",
        responses={200: "ReceivedWebhooks"},
        auth=PUBLIC,
    )
    async def list_webhooks(req, principal):
        return list(received)

    @platform_route(
        api,
        "DELETE",
        "/dev/webhooks",
        tag="Developer",
        summary="Forget the webhooks received (dev mode)",
        auth=PUBLIC,
    )
    async def clear_webhooks(req, principal):
        received.clear()
