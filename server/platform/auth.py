"""Who may call the server (spec/platform.md §3.1, issue: JWTs via PyJWT, service tokens).

FC_AUTH=jwt (the default): every route but the public ones needs `Authorization: Bearer
<token>` (or, for routers fetching their config, `X-API-Key: <token>`), where the token is
- one of FC_SERVICE_TOKENS: a service principal of anchor scope, named by its entry; or
- a JWT signed with FC_JWT_SECRET (HS256), FC_JWT_PUBLIC_KEY (RS256) or a key of
  FC_JWT_JWKS_URL (chosen by `kid`), unexpired, with FC_JWT_ISSUER / FC_JWT_AUDIENCE when set.
  Claims: `sub` the principal, `scope` ANCHOR|PARTNER|CLIENT, `clients`, `roles`,
  `permissions`, `type`, `name`, `email` (principal.py says what they grant).
FC_AUTH=none: everyone is the developer (anchor); settings allow it on loopback only.

Public: health, metrics, the OpenAPI document, the dashboard page (it asks for a token), and
routes registered as PUBLIC or DISPATCH (the dispatch callback checks its own HMAC token).
Non-platform routes (router monitoring, publishing, dead letters) need an anchor principal.
Refusals are 401 `{"error": "UNAUTHORIZED", "message": ...}` with `WWW-Authenticate`, or
403 FORBIDDEN.
"""

import asyncio
import hashlib
import hmac

from flowcatalyst.core.log import logger
from flowcatalyst.edge.auth import DASHBOARD_PATHS, PUBLIC_PATHS

from .errors import PlatformError, forbidden, unauthorized
from .principal import DEVELOPER, Principal
from .routes import BEARER, error_reply

_log = logger("auth")


def _read_key(value):
    """PEM text, or the name of a file that holds it."""
    if "-----BEGIN" in value:
        return value
    try:
        with open(value) as f:
            return f.read()
    except OSError as e:
        raise ValueError("FC_JWT_PUBLIC_KEY is neither PEM text nor a readable file: %s" % e) from e


class PlatformAuth:
    def __init__(self, settings):
        self.mode = settings.auth
        self.service_tokens = dict(settings.service_tokens or {})
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway
        self._secret = settings.jwt_secret
        self._public_key = _read_key(settings.jwt_public_key) if settings.jwt_public_key else None
        self._jwks = None
        if settings.jwt_jwks_url:
            import jwt

            self._jwks = jwt.PyJWKClient(
                settings.jwt_jwks_url, cache_keys=True, lifespan=300, timeout=10
            )

    # -- the microdot hook ----------------------------------------------------------------------

    async def check(self, req):
        """None when the request may go on (with `req.g.principal` set), else the refusal."""
        route = getattr(req, "route", None)  # None when no route matched (404, 405)
        route_auth = getattr(route, "fc_auth", None)
        if (
            req.path in PUBLIC_PATHS
            or req.path in DASHBOARD_PATHS
            or (route_auth is not None and route_auth != BEARER)
        ):
            return None
        try:
            principal = await self.authenticate(req)
            if (
                route is not None and route_auth is None and not principal.is_anchor
            ):  # a router or edge route
                raise forbidden(
                    "%s is not an anchor principal: router monitoring and publishing are for anchors"
                    % principal.id
                )
        except PlatformError as e:
            reply = error_reply(e)
            if e.status == 401:
                reply.headers["WWW-Authenticate"] = 'Bearer realm="FlowCatalyst"'
            return reply
        req.g.principal = principal
        return None

    async def authenticate(self, req):
        """The caller's Principal; PlatformError 401 when there is none."""
        if self.mode == "NONE":
            return DEVELOPER
        token = self._token(req)
        name = self._service_token(token)
        if name is not None:
            return Principal(
                "service:" + name, type="SERVICE", scope="ANCHOR", name=name, via="service-token"
            )
        if not (self._secret or self._public_key or self._jwks):
            raise unauthorized("invalid token")
        claims = await self._claims(token)
        return principal_from_claims(claims)

    # -- parts ----------------------------------------------------------------------------------

    @staticmethod
    def _token(req):
        header = req.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise unauthorized("the Authorization header must be 'Bearer <token>'")
            return token.strip()
        api_key = req.headers.get("X-API-Key", "").strip()
        if api_key:
            return api_key
        raise unauthorized("a bearer token is required (Authorization: Bearer <token>)")

    def _service_token(self, token):
        found = None
        for known, name in self.service_tokens.items():  # every entry compared: no early exit
            # digests compared, so the time taken says nothing of the token's length
            if hmac.compare_digest(_digest(known), _digest(token)):
                found = name
        return found

    async def _claims(self, token):
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise unauthorized("the token is not a JWT: %s" % e) from None
        if self._jwks is not None:
            try:
                key = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            except (jwt.PyJWKClientConnectionError, ValueError) as e:
                # unreachable, or not a JWKS (an HTML error page from a proxy, say)
                _log.error("JWKS not usable", error=str(e))
                raise PlatformError(
                    503, "AUTH_UNAVAILABLE", "the keys to check the token with cannot be fetched"
                ) from None
            except jwt.PyJWKClientError as e:
                if "Unable to find a signing key" not in str(e):
                    _log.error("JWKS not usable", error=str(e))
                    raise PlatformError(
                        503, "AUTH_UNAVAILABLE", "the keys to check the token with cannot be read"
                    ) from None
                raise unauthorized("no key for this token: %s" % e) from None
            except jwt.PyJWTError as e:
                raise unauthorized("no key for this token: %s" % e) from None
            algorithms = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
        elif self._public_key is not None:
            key, algorithms = self._public_key, ["RS256", "RS384", "RS512"]
        else:
            key, algorithms = self._secret, ["HS256", "HS384", "HS512"]
        if header.get("alg") not in algorithms:
            raise unauthorized(
                "tokens signed with %s are not accepted here (%s)"
                % (header.get("alg"), ", ".join(algorithms))
            )
        options = {"require": ["exp", "sub"], "verify_aud": self.audience is not None}
        try:
            return jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(
                "the token is for another audience (expected %s)" % self.audience
            ) from None
        except jwt.InvalidIssuerError:
            raise unauthorized(
                "the token is from another issuer (expected %s)" % self.issuer
            ) from None
        except jwt.MissingRequiredClaimError as e:
            raise unauthorized("the token lacks the %s claim" % e.claim) from None
        except jwt.PyJWTError as e:
            raise unauthorized("invalid token: %s" % e) from None


def _digest(text):
    return hashlib.sha256(text.encode("utf-8", "replace")).digest()


def _strings(value):
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v for v in value.replace(",", " ").split() if v)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return ()


def principal_from_claims(claims):
    return Principal(
        str(claims["sub"]),
        type=str(claims.get("type") or "USER").upper(),
        scope=str(claims.get("scope") or "CLIENT").upper(),
        clients=_strings(claims.get("clients")),
        roles=_strings(claims.get("roles")),
        permissions=_strings(claims.get("permissions")),
        name=claims.get("name"),
        email=claims.get("email"),
        via="jwt",
    )
