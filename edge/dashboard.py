"""The dashboard page: `/dashboard`, `/dashboard.html` and `/monitoring/dashboard`, behind the
API's authentication like every non-public route.

The page is one static file, dashboard.html next to this module (inline CSS and JavaScript, no
external resources: the edge runs offline). It reads everything from the JSON API, so nothing
is filled in here. It is read once, when the API is set up; a missing file (a packaging
mistake) is logged and answered with a 500 that says so, and the rest of the API runs on.

The Content-Security-Policy allows exactly the page's own inline script and style (by hash),
requests to its own origin only, and no framing (the page has buttons that change things).
"""

import base64
import hashlib
import os
import re

from microdot import Response

from flowcatalyst.core.log import logger

from .api_common import error_response, route

PATHS = ("/dashboard", "/dashboard.html", "/monitoring/dashboard")
PAGE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard.html")

_log = logger("api")


def _hashes(tag, text):
    out = []
    for block in re.findall(r"<%s>(.*?)</%s>" % (tag, tag), text, re.S):
        digest = hashlib.sha256(block.encode("utf-8")).digest()
        out.append("'sha256-%s'" % base64.b64encode(digest).decode("ascii"))
    return " ".join(out) or "'none'"


def page_headers(text):
    policy = (
        "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ) % (_hashes("script", text), _hashes("style", text))
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def load_page(path=PAGE_FILE):
    """(body bytes, headers) of the page; OSError when the file is missing."""
    with open(path, "rb") as f:
        body = f.read()
    return body, page_headers(body.decode("utf-8"))


def register_dashboard(app, edge):
    try:
        body, headers = load_page()
    except OSError as e:
        _log.error("dashboard page missing: /dashboard will answer 500", path=PAGE_FILE, error=repr(e))
        body = headers = None

    async def dashboard(req):
        if body is None:
            return error_response(500, "dashboard_missing", "the dashboard page (%s) is not installed" % PAGE_FILE)
        return Response(body, 200, dict(headers))

    for path in PATHS:
        route(app, path)(dashboard)
