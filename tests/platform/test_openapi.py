"""The OpenAPI document (server/platform/openapi.py) of a real server with JWT auth, on SQLite
and PostgreSQL: served without a token, listing every registered platform route with its
method, auth and permissions, every `$ref` resolving, and generated from the route registry
(a route registered later shows up).

`test_every_schema_name_is_described` and `test_every_ref_resolves` are the checks for every
API module: a body or response naming a schema that no module's SCHEMAS describes fails them."""

import re

import httpx
import pytest

from flowcatalyst.edge.routerapp import VERSION
from flowcatalyst.server.platform import openapi
from flowcatalyst.server.platform.routes import BEARER, DISPATCH, PUBLIC, RouteInfo, platform_route
from tests.platform.test_api_pools import start_server

SECURITY = {BEARER: [{"bearerAuth": []}], DISPATCH: [{"dispatchToken": []}], PUBLIC: []}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    return start_server(request, tmp_path_factory)


def fetch(server):
    reply = httpx.get(server.url(openapi.PATH), timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    return reply.json()


def refs(node):
    """Every `$ref` value anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc, ref):
    assert ref.startswith("#/"), "only local refs are expected: %s" % ref
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, "%s does not resolve" % ref
        node = node[part]
    return node


def test_served_without_a_token_under_jwt_auth(server):
    assert httpx.get(server.url("/api/events")).status_code == 401  # FC_AUTH=jwt is on
    doc = fetch(server)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] == "FlowCatalyst platform API"
    assert doc["info"]["version"] == VERSION
    assert doc["servers"] == [{"url": "/"}]
    assert set(doc["components"]["securitySchemes"]) == {"bearerAuth", "dispatchToken"}
    assert doc["components"]["schemas"]["Error"]["required"] == ["error", "message"]
    assert doc["paths"][openapi.PATH]["get"]["security"] == []


def test_every_registered_route_appears(server):
    doc = fetch(server)
    routes = server.app.api.platform_routes
    assert len(routes) > 30  # every API module registered its routes
    for info in routes:
        op = doc["paths"][info.path][info.method.lower()]
        where = "%s %s" % (info.method, info.path)
        assert op["summary"] == info.summary, where
        assert op["security"] == SECURITY[info.auth], where
        assert op.get("tags") == ([info.tag] if info.tag else None), where
        params = [(p["in"], p["name"]) for p in op.get("parameters", ())]
        expected = [("path", n) for n in re.findall(r"\{(\w+)\}", info.path)]
        expected += [("query", q[0]) for q in info.query]
        assert params == expected, where
        if info.permission:
            assert op["x-permissions"] == list(info.permission), where
            assert all("`%s`" % p in op["description"] for p in info.permission), where
        else:
            assert "x-permissions" not in op, where
        assert set(op["responses"]) >= {str(s) for s in info.responses}, where
        if info.auth == BEARER:
            assert "401" in op["responses"], where
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(i.method, i.path) for i in routes}


def test_routes_of_each_auth_kind(server):
    paths = fetch(server)["paths"]
    process = paths["/api/dispatch/process"]["post"]
    assert process["security"] == [{"dispatchToken": []}]
    assert process["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DispatchProcess"
    }
    pool = paths["/api/dispatch-pools/{id}"]["get"]
    assert pool["security"] == [{"bearerAuth": []}]
    assert pool["x-permissions"] == ["platform:messaging:dispatch-pool:view"]
    assert pool["parameters"][0] == {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    assert pool["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert pool["responses"]["403"]["description"] == "Forbidden"


def test_every_ref_resolves(server):
    doc = fetch(server)
    found = list(refs(doc))
    assert len(found) > 50
    unresolved = []
    for ref in set(found):
        try:
            resolve(doc, ref)
        except AssertionError as e:
            unresolved.append(str(e))
    assert unresolved == []


def test_every_schema_name_is_described(server):
    schemas = openapi.component_schemas()
    missing = set()
    for info in server.app.api.platform_routes:
        for name in [info.body] + list(info.responses.values()):
            if name is not None and name not in schemas:
                missing.add("%s %s: %s" % (info.method, info.path, name))
    assert missing == set()


def test_modules_do_not_describe_one_name_differently():
    seen = {}
    clashes = []
    for module in openapi.SCHEMA_MODULES + (openapi,):
        for name, schema in module.SCHEMAS.items():
            if name in seen and seen[name][1] != schema:
                clashes.append("%s in %s and %s" % (name, seen[name][0], module.__name__))
            seen.setdefault(name, (module.__name__, schema))
    assert clashes == []


def test_valid_openapi_31(server):
    validator = pytest.importorskip(
        "openapi_spec_validator", reason="openapi-spec-validator is not installed"
    )
    validator.validate(fetch(server))


def test_a_route_registered_later_shows_up(server):
    before = fetch(server)
    path = "/api/test-later/{thing}"
    assert path not in before["paths"]

    def register():
        @platform_route(
            server.app.api,
            "PUT",
            path,
            summary="Registered by a test after the first build",
            tag="Later",
            permission=("platform:test:thing:update", "platform:test:thing:admin"),
            body="Error",
            responses={204: None},
            query=(("dryRun", "boolean", "only check"),),
        )
        async def later(req, principal, thing):
            return None

    server.run(register)  # in the server's loop: no race with a request being routed
    op = fetch(server)["paths"][path]["put"]
    assert op["summary"] == "Registered by a test after the first build"
    assert op["tags"] == ["Later"]
    assert op["x-permissions"] == ["platform:test:thing:update", "platform:test:thing:admin"]
    assert op["parameters"][1] == {
        "name": "dryRun",
        "in": "query",
        "schema": {"type": "boolean"},
        "description": "only check",
    }
    assert op["responses"]["204"] == {"description": "No Content"}
    assert {"name": "Later"} in fetch(server)["tags"]


def test_unknown_schema_names_become_plain_descriptions():
    info = RouteInfo(
        "POST",
        "/api/x",
        "x",
        "X",
        (),
        "NoSuchBody",
        {200: "NoSuchSchema", 204: None},
        (),
        PUBLIC,
        None,
    )
    op = openapi.document([info])["paths"]["/api/x"]["post"]
    assert op["requestBody"]["content"] == {"application/json": {"schema": {}}}
    assert op["responses"] == {"200": {"description": "OK"}, "204": {"description": "No Content"}}
    assert op["security"] == [] and "description" not in op
