"""The dashboard page: `/dashboard`, `/dashboard.html` and `/monitoring/dashboard` (behind the
API's authentication like every non-public route).

A placeholder until the real dashboard replaces this module: `register_dashboard(app, edge)`
is all that edge/api.py calls.
"""

from microdot import Response

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>FlowCatalyst edge</title></head>
<body>
<h1>FlowCatalyst edge %(version)s</h1>
<p>The dashboard is not built yet. The JSON the dashboard will show:</p>
<ul>
<li><a href="/monitoring">/monitoring</a> &mdash; health, pools, warnings</li>
<li><a href="/monitoring/pools">/monitoring/pools</a></li>
<li><a href="/monitoring/queue-stats">/monitoring/queue-stats</a></li>
<li><a href="/monitoring/circuit-breakers">/monitoring/circuit-breakers</a></li>
<li><a href="/monitoring/warnings">/monitoring/warnings</a></li>
<li><a href="/monitoring/in-flight-messages">/monitoring/in-flight-messages</a></li>
<li><a href="/api/dead-letters">/api/dead-letters</a></li>
<li><a href="/metrics">/metrics</a></li>
</ul>
</body>
</html>
"""


def register_dashboard(app, edge):
    async def dashboard(req):
        return Response(PAGE % {"version": edge.version}, 200, {"Content-Type": "text/html; charset=utf-8"})

    for path in ("/dashboard", "/dashboard.html", "/monitoring/dashboard"):
        app.route(path)(dashboard)
