"""Who may call the platform server (server/platform/auth.py, settings.py), on SQLite and
PostgreSQL: JWTs signed with an HS256 secret, an RS256 public key or a key from a JWKS URL
(served by a real HTTP server on loopback), service tokens as a bearer or X-API-Key,
permissions and anchor-only routes, FC_AUTH=none (loopback only), the dispatch callback's own
HMAC token, and the public routes."""

import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flowcatalyst.server.platform.dispatchauth import DispatchAuth
from flowcatalyst.server.platform.settings import PlatformSettings, SettingsError
from tests.support.platform import APP_KEY, PlatformRunner
from tests.support.postgres import FreshDatabase
from tests.support.target import Target

SECRET = "test-jwt-secret-0123456789abcdef0"
ISSUER = "https://issuer.test"
AUDIENCE = "flowcatalyst-api"
SERVICE_TOKEN = "svc-token-0123456789abcdef"
KID = "key-1"
CHALLENGE = 'Bearer realm="FlowCatalyst"'
VIEW_EVENTS = "platform:messaging:event:view"
API_ONLY = {"router_enabled": False, "stream_enabled": False, "scheduler_enabled": False}


# -- servers (one per configuration and database, for the whole module) -------------------------


def start(request, tmp_path_factory, **settings):
    tmp = tmp_path_factory.mktemp(request.param)
    db = FreshDatabase() if request.param == "postgres" else None
    url = db.url if db else "sqlite://%s" % (tmp / "platform.db")
    server = PlatformRunner(tmp, url, **settings).start()

    def finish():
        server.stop()
        if db is not None:
            db.drop()

    request.addfinalizer(finish)
    return server


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks(rsa_key):
    """A JWKS endpoint on loopback with the public half of `rsa_key` as KID; `/broken` fails."""
    key = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    key.update(kid=KID, use="sig", alg="RS256")
    target = Target().start()
    target.on(
        "/jwks.json", lambda rec: (200, {"Content-Type": "application/json"}, {"keys": [key]})
    )
    target.on("/broken", lambda rec: (500, {}, "down"))
    target.on("/html", lambda rec: (200, {"Content-Type": "text/html"}, "<html>proxy</html>"))
    yield target
    target.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hs(request, tmp_path_factory):
    """JWT auth with an HS256 secret, an issuer, an audience and a service token; the whole
    server (router included: its routes are anchor-only)."""
    return start(
        request,
        tmp_path_factory,
        auth="JWT",
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        service_tokens={SERVICE_TOKEN: "router"},
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def rs(request, tmp_path_factory, rsa_key):
    """JWT auth with an RS256 public key, given as a PEM file."""
    pem = tmp_path_factory.mktemp("key") / "public.pem"
    pem.write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return start(request, tmp_path_factory, auth="JWT", jwt_public_key=str(pem), **API_ONLY)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def by_jwks(request, tmp_path_factory, jwks):
    return start(
        request, tmp_path_factory, auth="JWT", jwt_jwks_url=jwks.url("/jwks.json"), **API_ONLY
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def jwks_down(request, tmp_path_factory, jwks):
    return start(
        request, tmp_path_factory, auth="JWT", jwt_jwks_url=jwks.url("/broken"), **API_ONLY
    )


@pytest.fixture(scope="module", params=["sqlite"])
def jwks_not_json(request, tmp_path_factory, jwks):
    return start(request, tmp_path_factory, auth="JWT", jwt_jwks_url=jwks.url("/html"), **API_ONLY)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def open_server(request, tmp_path_factory):
    return start(request, tmp_path_factory, auth="NONE", **API_ONLY)


# -- helpers ----------------------------------------------------------------------------------


def sign(key=SECRET, algorithm="HS256", headers=None, **claims):
    """A JWT for an anchor user, valid for ten minutes, from ISSUER for AUDIENCE; a claim
    given as None is left out."""
    body = {
        "sub": "user-1",
        "scope": "ANCHOR",
        "exp": int(time.time()) + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=algorithm, headers=headers)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def get(server, path, token=None, header="Authorization"):
    headers = {}
    if token is not None:
        headers[header] = "Bearer " + token if header == "Authorization" else token
    return httpx.get(server.url(path), headers=headers, timeout=15)


def refused(reply, status, code):
    """The message of a refusal with exactly `{"error": code, "message": ...}`."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert sorted(body) == ["error", "message"] and body["error"] == code, body
    if status == 401:
        assert reply.headers["WWW-Authenticate"] == CHALLENGE
    return body["message"]


def process(server, token=None, job_id="0HZJOBTESTJOB"):
    headers = {"Authorization": "Bearer " + token} if token is not None else {}
    return httpx.post(
        server.url("/api/dispatch/process"), json={"messageId": job_id}, headers=headers, timeout=10
    )


# -- bearer tokens ----------------------------------------------------------------------------


def test_no_token_is_401(hs):
    message = refused(get(hs, "/api/events"), 401, "UNAUTHORIZED")
    assert "bearer token is required" in message


def test_not_a_bearer_header_is_401(hs):
    reply = httpx.get(hs.url("/api/events"), headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert "Bearer <token>" in refused(reply, 401, "UNAUTHORIZED")


def test_hs256_token_is_accepted(hs):
    reply = get(hs, "/api/events", sign())
    assert reply.status_code == 200, reply.text
    assert reply.json() == []


@pytest.mark.parametrize(
    "token, says",
    [
        (sign(key="another-secret-0123456789abcdef0"), "Signature verification failed"),
        (sign(exp=int(time.time()) - 3600), "has expired"),
        (sign(iss="https://elsewhere.test"), "another issuer"),
        (sign(aud="another-api"), "another audience"),
        (sign(aud=None), "lacks the aud claim"),
        (sign(exp=None), "lacks the exp claim"),
        (sign(sub=None), "lacks the sub claim"),
        (sign(algorithm="none", key=None), "not accepted here"),
        ("not.a.jwt", "not a JWT"),
    ],
    ids=[
        "bad-signature",
        "expired",
        "wrong-issuer",
        "wrong-audience",
        "no-audience",
        "no-exp",
        "no-sub",
        "alg-none",
        "garbage",
    ],
)
def test_bad_tokens_are_401(hs, token, says):
    assert says in refused(get(hs, "/api/events", token), 401, "UNAUTHORIZED")


def test_expiry_allows_the_leeway(hs):
    assert get(hs, "/api/events", sign(exp=int(time.time()) - 5)).status_code == 200


def test_rs256_public_key(rs, rsa_key):
    assert get(rs, "/api/events", sign(rsa_key, "RS256", iss=None, aud=None)).status_code == 200
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(get(rs, "/api/events", sign(other, "RS256")), 401, "UNAUTHORIZED")


def test_rs256_server_refuses_hs256_signed_with_its_public_key(rs, rsa_key):
    """The algorithm confusion attack: the public key used as an HMAC secret (built by hand:
    PyJWT itself refuses to sign HS256 with a PEM key)."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = "%s.%s" % (
        b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
        b64url(json.dumps({"sub": "x", "scope": "ANCHOR", "exp": 4102444800}).encode()),
    )
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    token = "%s.%s" % (signing_input, b64url(mac))
    assert "HS256" in refused(get(rs, "/api/events", token), 401, "UNAUTHORIZED")


def test_jwks_key_chosen_by_kid(by_jwks, rsa_key, jwks):
    token = sign(rsa_key, "RS256", headers={"kid": KID}, iss=None, aud=None)
    assert get(by_jwks, "/api/events", token).status_code == 200
    assert jwks.received("/jwks.json")  # fetched from the real endpoint
    unknown = sign(rsa_key, "RS256", headers={"kid": "key-2"})
    assert "no key for this token" in refused(
        get(by_jwks, "/api/events", unknown), 401, "UNAUTHORIZED"
    )
    hs256 = sign(headers={"kid": KID})
    refused(get(by_jwks, "/api/events", hs256), 401, "UNAUTHORIZED")


def test_jwks_that_is_not_json_is_503_not_500(jwks_not_json, rsa_key):
    reply = get(jwks_not_json, "/api/events", sign(rsa_key, "RS256", headers={"kid": KID}))
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"] == "AUTH_UNAVAILABLE"


def test_jwks_unreachable_is_503(jwks_down, rsa_key):
    token = sign(rsa_key, "RS256", headers={"kid": KID})
    reply = get(jwks_down, "/api/events", token)
    assert reply.status_code == 503, reply.text
    assert reply.json() == {
        "error": "AUTH_UNAVAILABLE",
        "message": "the keys to check the token with cannot be fetched",
    }


def test_service_token_as_bearer_and_as_x_api_key(hs):
    assert get(hs, "/api/events", SERVICE_TOKEN).status_code == 200
    config = get(hs, "/api/config/router", SERVICE_TOKEN, header="X-API-Key")
    assert config.status_code == 200, config.text
    assert "processingPools" in config.json()
    assert get(hs, "/monitoring/pools", SERVICE_TOKEN).status_code == 200  # anchor scope
    refused(get(hs, "/api/events", SERVICE_TOKEN + "x"), 401, "UNAUTHORIZED")
    refused(get(hs, "/api/events", SERVICE_TOKEN[:-1], header="X-API-Key"), 401, "UNAUTHORIZED")


# -- permissions ------------------------------------------------------------------------------


def test_client_token_without_the_permission_is_403(hs):
    token = sign(scope="CLIENT", clients=["clt_1"])
    message = refused(get(hs, "/api/events", token), 403, "FORBIDDEN")
    assert message == "user-1 lacks the permission %s" % VIEW_EVENTS


def test_client_token_with_the_permission_directly_or_by_role(hs):
    direct = sign(scope="CLIENT", clients=["clt_1"], permissions=[VIEW_EVENTS])
    assert get(hs, "/api/events", direct).status_code == 200
    by_role = sign(scope="CLIENT", clients=["clt_1"], roles=["platform:messaging-viewer"])
    assert get(hs, "/api/events", by_role).status_code == 200
    wildcard = sign(scope="PARTNER", permissions=["platform:messaging:*:view"])
    assert get(hs, "/api/events", wildcard).status_code == 200


def test_router_routes_are_for_anchors(hs):
    token = sign(scope="CLIENT", clients=["*"], roles=["platform:super-admin"])
    assert "not an anchor principal" in refused(
        get(hs, "/monitoring/pools", token), 403, "FORBIDDEN"
    )
    assert get(hs, "/monitoring/pools", sign()).status_code == 200


# -- public routes and the dispatch callback --------------------------------------------------


def test_health_metrics_and_openapi_are_public(hs):
    for path in ("/health", "/health/live", "/metrics", "/api/openapi.json"):
        assert get(hs, path).status_code == 200, path


def test_dispatch_callback_needs_its_hmac_token_under_jwt(hs):
    refused_ack = {"ack": False, "message": "unauthorized"}
    for token in (None, "0" * 64, sign(), SERVICE_TOKEN):
        reply = process(hs, token)
        assert (reply.status_code, reply.json()) == (401, refused_ack), token
    right = DispatchAuth(APP_KEY).token("0HZJOBTESTJOB")
    reply = process(hs, right)  # past the token check: the job does not exist
    assert (reply.status_code, reply.json()) == (200, {"ack": True, "message": "job not found"})


def test_dispatch_callback_needs_its_hmac_token_without_auth(open_server):
    for token in (None, "0" * 64, DispatchAuth("another-app-key-0123").token("0HZJOBTESTJOB")):
        reply = process(open_server, token)
        assert (reply.status_code, reply.json()) == (401, {"ack": False, "message": "unauthorized"})


def test_fc_auth_none_lets_everyone_in_as_the_developer(open_server):
    assert get(open_server, "/api/events").status_code == 200
    assert get(open_server, "/api/events", "anything").status_code == 200


# -- settings ---------------------------------------------------------------------------------


def settings(**environ):
    base = {"FLOWCATALYST_APP_KEY": APP_KEY}
    base.update(environ)
    return PlatformSettings.parse([], environ=base)


def test_fc_auth_none_only_on_loopback(tmp_path):
    for host in ("127.0.0.1", "::1", "localhost"):
        assert settings(FC_AUTH="none", FC_API_HOST=host).validate().auth == "NONE"
    with pytest.raises(SettingsError, match="FC_AUTH=none only listens on loopback"):
        settings(FC_AUTH="none", FC_API_HOST="0.0.0.0").validate()
    with pytest.raises(SettingsError, match="FC_AUTH=none only listens on loopback"):
        PlatformRunner(tmp_path, None, auth="NONE", host="0.0.0.0")
    opted_in = PlatformSettings.parse(
        ["--insecure", "--host", "0.0.0.0"], {"FC_AUTH": "none", "FLOWCATALYST_APP_KEY": APP_KEY}
    )
    assert opted_in.validate().insecure is True


def test_jwt_needs_one_way_to_check_tokens():
    with pytest.raises(SettingsError, match="needs something to check tokens with"):
        settings(FC_AUTH="jwt").validate()
    with pytest.raises(SettingsError, match="give one of"):
        settings(FC_JWT_SECRET=SECRET, FC_JWT_JWKS_URL="http://127.0.0.1:1/jwks").validate()
    with pytest.raises(SettingsError, match="at least 16 characters"):
        settings(FC_SERVICE_TOKENS="router=short")
    assert settings(FC_SERVICE_TOKENS="router=" + SERVICE_TOKEN).service_tokens == {
        SERVICE_TOKEN: "router"
    }
    assert settings(FC_AUTH="JWT", FC_JWT_SECRET=SECRET).validate().auth == "JWT"
