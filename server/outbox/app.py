"""`fc-server outbox`: the processor with its own small HTTP port (FC_METRICS_PORT) for health,
Prometheus metrics and the operator's view of blocked groups.

    GET  /health, /health/live       the processor's loops and counters
    GET  /health/ready               the database answers and the loops run (else 503)
    GET  /metrics                    rows by status, oldest pending age, batches, results
    GET  /outbox/groups/blocked      groups held behind a row that failed for good
    POST /outbox/groups/{group}/unblock   requeue that group's failed rows (retries reset)

The port has no authentication (Prometheus scrapes it); the one route that changes something,
unblock, answers only to callers on the same host.
"""

from urllib.parse import unquote

from microdot import Response

from flowcatalyst.core.log import logger
from flowcatalyst.core.metrics import CONTENT_TYPE, MetricsRegistry
from flowcatalyst.edge.api import new_api
from flowcatalyst.edge.api_common import json_response, route
from flowcatalyst.edge.auth import Auth
from flowcatalyst.edge.routerapp import VERSION, StartupError, listen
from flowcatalyst.edge.settings import is_loopback

from . import schema
from .processor import OutboxProcessor

_log = logger("outbox")


class OPEN:  # the edge's Auth settings for a port without authentication
    auth_mode = "NONE"
    basic_username = basic_password = api_token = None


class OutboxServer:
    name = "outbox"
    version = VERSION

    def __init__(self, settings):
        self.settings = settings
        self.metrics = MetricsRegistry()
        self.processor = OutboxProcessor(settings, self.metrics)
        self._server = None
        self._serving = None

    async def start(self):
        try:
            await self.processor.start()
        except Exception as e:
            raise StartupError("FC_OUTBOX_DB_URL: cannot open the outbox table: %s" % e) from e
        self._server, self._serving, _ = await listen(self.build_api(), self.settings)
        _log.info("outbox metrics and health", url="http://%s:%d" % (self.settings.host, self.port))

    @property
    def port(self):
        return self._server.sockets[0].getsockname()[1] if self._server else self.settings.port

    async def stop(self):
        if self._server is not None:
            self._server.close()
            self._serving.cancel()
        await self.processor.stop()

    def build_api(self):
        api = new_api(Auth(OPEN))
        processor = self.processor

        @route(api, "/health")
        async def health(req):
            return json_response({"status": "UP", "version": self.version, **processor.health()})

        @route(api, "/health/live")
        async def live(req):
            ok = processor.health()["running"]
            return json_response({"status": "LIVE" if ok else "DOWN"}, 200 if ok else 503)

        @route(api, "/health/ready")
        async def ready(req):
            await processor.refresh_stats()
            if not processor.health()["running"] or any(t.stats is None for t in processor.tables):
                return json_response(
                    {
                        "status": "NOT_READY",
                        "reason": processor.last_error or "the loops are not running",
                    },
                    503,
                )
            return json_response({"status": "READY"})

        @route(api, "/metrics")
        async def metrics(req):
            await processor.refresh_stats()
            return Response(self.metrics.render(), 200, {"Content-Type": CONTENT_TYPE})

        @route(api, "/outbox/groups/blocked")
        async def blocked(req):
            out = []
            for table in processor.tables:
                for group, row_id, status, error in await table.call(
                    table.repository.blocked_groups
                ):
                    out.append(
                        {
                            "table": table.repository.table,
                            "group": group,
                            "blockedItemId": row_id,
                            "status": schema.STATUS_NAMES.get(status, str(status)),
                            "error": error,
                        }
                    )
            return json_response({"blocked": out})

        @route(api, "/outbox/groups/<group>/unblock", methods=("POST",))
        async def unblock(req, group):
            if not is_loopback((req.client_addr or ("",))[0]):
                return json_response(
                    {"error": "forbidden", "message": "unblock is for operators on this host"}, 403
                )
            group = unquote(group)
            count = 0
            for table in processor.tables:
                count += await table.call(table.repository.unblock, group)
            if not count:
                return json_response(
                    {"error": "not_found", "message": "group %r is not blocked" % group}, 404
                )
            _log.info("group unblocked by an operator", group=group, rows=count)
            return json_response({"status": "UNBLOCKED", "requeued": count})

        return api
