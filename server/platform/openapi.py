"""`GET /api/openapi.json` (public): the OpenAPI 3.1 document of the platform API.

It is built from what the server actually registered: `api.platform_routes`, the RouteInfo
that routes.platform_route records for each route, and the component schemas of the API
modules (`SCHEMA_MODULES`, each with a module-level SCHEMAS dict). A route's `body` and
`responses` name component schemas; a name no module describes is left as a plain
description (tests/platform/test_openapi.py reports it). The document is built at the first
request and rebuilt only when routes were registered since.

Each operation says how it is authenticated: `bearerAuth` (a JWT or a service token, also
accepted as `X-API-Key`), `dispatchToken` (the router's callback: an HMAC of the job id) or
nothing (public); and which permissions it needs, in `x-permissions` and in its description.
"""

import re
from http import HTTPStatus

from flowcatalyst.edge.routerapp import VERSION

from . import devreceiver
from .apimodules import API_MODULES
from .routes import BEARER, DISPATCH, PUBLIC, platform_route

PATH = "/api/openapi.json"
REF = "#/components/schemas/"

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "example": "VALIDATION_ERROR"},
            "message": {"type": "string"},
            "field": {"type": "string", "description": "the input the error is about"},
        },
    },
    "OpenApiDocument": {"type": "object", "description": "an OpenAPI 3.1 document"},
}

SCHEMA_MODULES = API_MODULES + (devreceiver,)

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT or service token",
        "description": "A JWT (FC_JWT_SECRET, FC_JWT_PUBLIC_KEY or FC_JWT_JWKS_URL) or one of "
        "FC_SERVICE_TOKENS; the same token is also accepted in an X-API-Key header. "
        "Not needed when the server runs with FC_AUTH=none.",
    },
    "dispatchToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "HMAC of the job id",
        "description": "Lowercase hex HMAC-SHA256 of the dispatch job id, keyed from "
        "FLOWCATALYST_APP_KEY: the authToken of the message pointer the scheduler queued.",
    },
}

SECURITY = {
    BEARER: [{"bearerAuth": []}],
    DISPATCH: [{"dispatchToken": []}],
    PUBLIC: [],
}


def component_schemas():
    """Every module's SCHEMAS in one dict (ours last: "Error" is the platform's envelope)."""
    schemas = {}
    for module in SCHEMA_MODULES:
        schemas.update(module.SCHEMAS)
    schemas.update(SCHEMAS)
    return schemas


def document(routes):
    """The OpenAPI document of `routes` (RouteInfo)."""
    schemas = component_schemas()
    paths = {}
    tags = []
    for info in routes:
        paths.setdefault(info.path, {})[info.method.lower()] = operation(info, schemas)
        if info.tag and info.tag not in tags:
            tags.append(info.tag)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "FlowCatalyst platform API",
            "version": VERSION,
            "description": "Events, subscriptions, dispatch pools, connections, dispatch jobs "
            "and audit logs of a FlowCatalyst platform. Errors are "
            '`{"error": CODE, "message": ...}`.',
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }


def operation(info, schemas):
    op = {"summary": info.summary, "security": SECURITY[info.auth]}
    if info.tag:
        op["tags"] = [info.tag]
    description = _description(info)
    if description:
        op["description"] = description
    if info.permission:
        op["x-permissions"] = list(info.permission)
    parameters = _path_parameters(info.path) + [
        {"name": name, "in": "query", "schema": {"type": kind}, "description": text}
        for name, kind, text in info.query
    ]
    if parameters:
        op["parameters"] = parameters
    if info.body:
        op["requestBody"] = {"required": True, "content": _json_content(info.body, schemas)}
    op["responses"] = _responses(info, schemas)
    return op


def _description(info):
    parts = [info.description] if info.description else []
    if info.permission:
        parts.append(
            "Permission: %s (anchor principals hold every permission)."
            % " or ".join("`%s`" % p for p in info.permission)
        )
    return "\n\n".join(parts)


def _path_parameters(path):
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"\{(\w+)\}", path)
    ]


def _json_content(name, schemas):
    schema = {"$ref": REF + name} if name in schemas else {}
    return {"application/json": {"schema": schema}}


def _responses(info, schemas):
    responses = dict(info.responses)
    # what platform_route's guard itself answers, whether or not the route lists it
    if info.auth == BEARER:
        responses.setdefault(401, "Error")
        if info.permission:
            responses.setdefault(403, "Error")
    out = {}
    for status in sorted(responses):
        name = responses[status]
        entry = {"description": _reason(status)}
        if name in schemas:
            entry["content"] = _json_content(name, schemas)
        out[str(status)] = entry
    return out


def _reason(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP %d" % status


def register(api, platform):
    built = {"count": -1, "doc": None}

    @platform_route(
        api,
        "GET",
        PATH,
        summary="This document: the OpenAPI 3.1 description of the platform API",
        tag="Meta",
        auth=PUBLIC,
        responses={200: "OpenApiDocument"},
    )
    async def openapi(req, principal):
        routes = api.platform_routes
        if built["count"] != len(routes):  # routes registered after the last build
            built["doc"] = document(routes)
            built["count"] = len(routes)
        return built["doc"]
