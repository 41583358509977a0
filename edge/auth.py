"""API authentication (router spec §9.1), chosen by AUTH_MODE:

  NONE    every route is open (the default; the edge then listens on loopback only, see
          settings.py)
  BASIC   `Authorization: Basic base64(user:password)` against AUTH_BASIC_USERNAME and
          AUTH_BASIC_PASSWORD; failure: 401, text `Unauthorized`,
          `WWW-Authenticate: Basic realm="FlowCatalyst"`, `x-auth-mode: BASIC` (as RS)
  TOKEN   `Authorization: Bearer <FC_API_TOKEN>`; failure: 401 JSON
          `{"error": "unauthorized", "message": ...}`, `WWW-Authenticate: Bearer
          realm="FlowCatalyst"`, `x-auth-mode: TOKEN` (the shape of RS's bearer modes)

Health probes and metrics (`PUBLIC_PATHS`) are always open. Credentials are compared in
constant time: both sides are hashed first, so neither their content nor their length shows
in the timing.
"""

import binascii
import hashlib
import hmac

from microdot import Response

from .api_common import error_response

PUBLIC_PATHS = frozenset(
    (
        "/health",
        "/health/live",
        "/health/ready",
        "/health/startup",
        "/metrics",
        "/q/health",
        "/q/health/live",
        "/q/health/ready",
        "/q/metrics",
    )
)
# The dashboard page holds no data (it asks the API for everything, with the token): in TOKEN
# mode it is served without one, so a browser can open /dashboard#token=... (a browser cannot
# send a bearer header for a page it navigates to). Under BASIC the browser asks for the login.
DASHBOARD_PATHS = frozenset(("/dashboard", "/dashboard.html", "/monitoring/dashboard"))


def _digest(text):
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def same(given, expected):
    """Constant-time string comparison."""
    return hmac.compare_digest(_digest(given), _digest(expected))


class Auth:
    def __init__(self, settings):
        self.mode = (settings.auth_mode or "NONE").upper()
        self.username = settings.basic_username or ""
        self.password = settings.basic_password or ""
        self.token = settings.api_token or ""

    def is_public(self, path):
        return self.mode == "NONE" or path in PUBLIC_PATHS or (self.mode == "TOKEN" and path in DASHBOARD_PATHS)

    def check(self, req):
        """None when the request may go on, else the 401 response."""
        if req is None or self.is_public(req.path):
            return None
        header = req.headers.get("Authorization", "")
        if self.mode == "BASIC":
            return None if self._basic_ok(header) else self._basic_denied()
        if self.mode == "TOKEN":
            ok, why = self._token_ok(header)
            return None if ok else self._token_denied(why)
        return self._token_denied("unknown AUTH_MODE %s" % self.mode)  # settings refuse this

    def _basic_ok(self, header):
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            return False
        try:
            decoded = binascii.a2b_base64(encoded.strip()).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        # `&`, not `and`: both comparisons always run
        return same(user, self.username) & same(password, self.password)

    def _token_ok(self, header):
        scheme, _, token = header.partition(" ")
        if not header:
            return False, "an Authorization: Bearer token is required"
        if scheme.lower() != "bearer" or not token.strip():
            return False, "the Authorization header must be 'Bearer <token>'"
        if not same(token.strip(), self.token):
            return False, "invalid token"
        return True, None

    @staticmethod
    def _basic_denied():
        return Response(
            "Unauthorized",
            401,
            {
                "Content-Type": "text/plain; charset=utf-8",
                "WWW-Authenticate": 'Basic realm="FlowCatalyst"',
                "x-auth-mode": "BASIC",
            },
        )

    @staticmethod
    def _token_denied(why):
        return error_response(401, "unauthorized", why, {"WWW-Authenticate": 'Bearer realm="FlowCatalyst"', "x-auth-mode": "TOKEN"})
