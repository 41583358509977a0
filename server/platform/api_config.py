"""`GET /api/config/router` (alias `/api/router/config`): the router configuration of router
spec §2.3 from the store (routerconfig.py), so a standalone router can be pointed at this
platform with FLOWCATALYST_CONFIG_URL (no existing platform serves it, spec §3.8). Routers
send no bearer: they present a service token as `X-API-Key` (the router's PLATFORM_API_KEY),
which auth.py accepts like a bearer."""

from .routerconfig import router_config
from .routes import platform_route

SCHEMAS = {
    "RouterConfig": {
        "type": "object",
        "required": ["processingPools", "queues"],
        "properties": {
            "processingPools": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["code", "concurrency"],
                    "properties": {
                        "code": {
                            "type": "string",
                            "description": "pool code; a client's pool is CODE@clientId",
                        },
                        "concurrency": {"type": "integer", "minimum": 1},
                        "rateLimitPerMinute": {"type": ["integer", "null"], "minimum": 1},
                    },
                },
            },
            "queues": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["queueName", "queueUri"],
                    "properties": {
                        "queueName": {"type": "string"},
                        "queueUri": {"type": "string"},
                        "connections": {"type": "integer", "minimum": 1},
                        "visibilityTimeout": {"type": "integer", "minimum": 1},
                    },
                },
            },
            "connections": {"type": "integer"},
        },
    }
}


def register(api, platform):
    for path in ("/api/config/router", "/api/router/config"):

        @platform_route(
            api,
            "GET",
            path,
            tag="Router",
            summary="The router configuration: dispatch pools and the dispatch queue (router spec §2.3)",
            permission="platform:messaging:dispatch-pool:view",
            responses={200: "RouterConfig", 401: "Error", 403: "Error"},
        )
        async def get_router_config(req, principal):
            return await router_config(platform)
