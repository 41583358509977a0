"""The platform server: the API, the stream processor, the scheduler and the router, each
switched by its setting (FC_PLATFORM_ENABLED, FC_STREAM_ENABLED, FC_SCHEDULER_ENABLED,
FC_ROUTER_ENABLED), sharing one store and one HTTP server.

Start order: the store (migrated), the router (configured from the store: the dispatch queue
and the ACTIVE pools, re-applied when a pool changes), the publisher the scheduler hands
pointers to (the router's own queue when it runs here), the stream processor and the
scheduler, then the API. Stop runs it backwards: the API stops taking requests, the loops
stop, the router lets its deliveries finish (FC_SHUTDOWN_TIMEOUT), the store closes.
"""

import os

from microdot import Response

from flowcatalyst.core.config import ConfigError
from flowcatalyst.core.httpclient import HttpClient
from flowcatalyst.core.log import logger
from flowcatalyst.core.metrics import CONTENT_TYPE, MetricsRegistry
from flowcatalyst.edge.api import new_api, register_router_routes
from flowcatalyst.edge.routerapp import VERSION, StartupError, config_from_data, listen

from ..app import RouterServerApp
from ..queues import NATS, SQS, queue_kind
from ..settings import RouterServerSettings
from . import devreceiver, openapi
from .apimodules import API_MODULES
from .auth import PlatformAuth
from .dispatchauth import DispatchAuth
from .loops import Signals
from .routerconfig import DISPATCH_QUEUE_NAME, router_config
from .routes import json_reply
from .scheduler import Scheduler
from .store import StoreError, open_store
from .stream import StreamProcessor

_log = logger("platform")


class Platform:
    """What the API modules, the stream processor and the scheduler share."""

    def __init__(self, settings, store, metrics, on_pools_changed=None):
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.signals = Signals()
        self.dispatch_auth = DispatchAuth(settings.app_key) if settings.app_key else None
        # the dispatch callback's client for subscriber webhooks (each request gets the job's
        # timeout); a redirect is the subscriber's misconfiguration, not followed (spec §3.9)
        self.delivery = HttpClient(
            connect_timeout=settings.connect_timeout,
            request_timeout=settings.request_timeout,
            max_redirects=0,
        )
        self.port = settings.port
        self.loops = []  # every background loop, for health
        self._on_pools_changed = on_pools_changed

    @property
    def callback_url(self):
        return self.settings.callback_url(self.port)

    async def pools_changed(self):
        """A dispatch pool was created, changed or removed: the router here applies it now (a
        standalone router picks it up at its next config fetch)."""
        self.signals.wake("scheduler")  # a resumed pool's held jobs may go now
        if self._on_pools_changed is not None:
            await self._on_pools_changed()

    async def close(self):
        await self.delivery.close()


class EmbeddedRouter(RouterServerApp):
    """The router inside the platform server: its config is the store's (routerconfig.py)."""

    name = "router"

    def __init__(self, settings, platform):
        self.platform = platform
        self._config = None
        RouterServerApp.__init__(self, router_settings(settings))

    def _initial_config(self):
        return self._config

    async def load_config(self):
        data = await router_config(self.platform)
        try:
            config, self._queue_options = config_from_data(data, self.check_queue)
        except ConfigError as e:
            raise StartupError("FC_DISPATCH_QUEUE: %s" % e) from e
        return config

    async def start_routing(self):
        self._config = await self.load_config()
        await RouterServerApp.start_routing(self)

    async def reload(self):
        await self.router.apply_config(await self.load_config())


def router_settings(settings):
    """RouterServerSettings for the embedded router from the platform's settings: every setting
    the two tables have in common (listen address, TLS, HTTP client, logging...)."""
    router = {row[0] for row in RouterServerSettings.TABLE}
    values = {row[0]: getattr(settings, row[0]) for row in settings.TABLE if row[0] in router}
    values["auth_mode"] = "NONE"  # the platform's auth (auth.py) guards the shared API
    return RouterServerSettings(**values)


async def open_publisher(uri, settings):
    """A queue adapter to publish dispatch pointers to when no router runs here."""
    kind = queue_kind(uri)
    if kind == SQS:
        from ..sqs import SqsQueue

        return SqsQueue(uri, visibility_timeout=settings.dispatch_visibility)
    if kind == NATS:
        from ..natsqueue import NatsQueue

        return NatsQueue.from_uri(uri)
    raise StartupError(
        "FC_DISPATCH_QUEUE=%s: an SQLite dispatch queue is only for a scheduler with the router in the same process "
        "(FC_ROUTER_ENABLED=true); split deployments use SQS or NATS" % uri
    )


class PlatformServer:
    name = "platform"
    version = VERSION

    def __init__(self, settings):
        self.settings = settings
        self.store = None
        self.platform = None
        self.router_app = None
        self.publisher = None
        self.stream = None
        self.scheduler = None
        self.api = None
        self.outbox = None
        self.auth = PlatformAuth(settings)
        self._server = None
        self._serving = None
        self.on_started = None  # called with the server once it serves (dev mode's banner)

    async def start(self):
        s = self.settings
        if s.database_url.startswith("sqlite://") or s.dispatch_queue.startswith("sqlite://"):
            # the embedded store and queue live there by default
            os.makedirs(s.data_dir, exist_ok=True)
        try:
            self.store = await open_store(s.database_url, s.sqlite_sync, s.database_pool_size)
        except StoreError as e:
            raise StartupError("FC_DATABASE_URL: %s" % e) from e
        metrics = MetricsRegistry()
        self.platform = Platform(s, self.store, metrics, self._pools_changed)
        if s.router_enabled:
            self.router_app = EmbeddedRouter(s, self.platform)
            self.platform.metrics = self.router_app.router.metrics.registry  # one /metrics for both
            await self.router_app.start_routing()
        if s.scheduler_enabled:
            if self.router_app is not None:
                self.publisher = self.router_app.queues.get(DISPATCH_QUEUE_NAME)
                if self.publisher is None:
                    raise StartupError(
                        "the dispatch queue %s did not start (see the router's warnings)"
                        % s.dispatch_queue
                    )
            else:
                self.publisher = await open_publisher(s.dispatch_queue, s)
            self.scheduler = Scheduler(self.platform, self.publisher).start()
            self.platform.loops.extend(self.scheduler.loops)
        if s.stream_enabled:
            self.stream = StreamProcessor(self.platform).start()
            self.platform.loops.extend(self.stream.loops)
        self.api = self.build_api()
        self._server, self._serving, scheme = await listen(self.api, s)
        self.platform.port = self.port
        _log.info(
            "platform started",
            api="%s://%s:%s" % (scheme, s.host, self.port),
            store=self.store.url,
            dispatch_queue=s.dispatch_queue,
            platform=s.platform_enabled,
            router=s.router_enabled,
            stream=s.stream_enabled,
            scheduler=s.scheduler_enabled,
            auth=s.auth,
        )
        if s.outbox_enabled:
            self.outbox = await start_outbox(self.platform.metrics, self.port)
        if self.on_started is not None:
            self.on_started(self)

    def build_api(self):
        api = new_api(self.auth)
        if self.router_app is not None:
            register_router_routes(api, self.router_app)
            self.router_app.api = api
        else:
            register_health(api, self)
        if self.settings.platform_enabled:
            for module in API_MODULES + (openapi,):
                module.register(api, self.platform)
        if getattr(self.settings, "dev_mode", False):
            devreceiver.register(api, self.platform)
        return api

    @property
    def port(self):
        return self._server.sockets[0].getsockname()[1] if self._server else self.settings.port

    async def _pools_changed(self):
        if self.router_app is not None:
            await self.router_app.reload()

    async def stop(self):
        if self.outbox is not None:
            await self.outbox.stop()
        if self._server is not None:
            self._server.close()
        if self._serving is not None:
            self._serving.cancel()
        for part in (self.scheduler, self.stream):
            if part is not None:
                await part.stop()
        if self.router_app is not None:
            await self.router_app.stop()  # its API is ours: stopped above
        elif self.publisher is not None:
            await self.publisher.stop()
        if self.platform is not None:
            await self.platform.close()
        if self.store is not None:
            await self.store.close()
        _log.info("platform stopped")


async def start_outbox(metrics, port):
    """The outbox processor of FC_OUTBOX_ENABLED, on its FC_OUTBOX_* settings; its platform
    is this server unless FC_API_BASE_URL says otherwise."""
    from ..outbox.processor import OutboxProcessor
    from ..outbox.settings import OutboxSettings

    environ = dict(os.environ)
    environ.setdefault("FC_API_BASE_URL", "http://127.0.0.1:%d" % port)
    try:
        settings = OutboxSettings.parse([], environ).validate()
    except ValueError as e:  # SettingsError is one
        raise StartupError("FC_OUTBOX_ENABLED: %s" % e) from e
    try:
        return await OutboxProcessor(settings, metrics).start()
    except Exception as e:
        raise StartupError("FC_OUTBOX_ENABLED: cannot open the outbox table: %s" % e) from e


def register_health(api, server):
    """Health and metrics of a server without the router (the router's are richer)."""
    from flowcatalyst.edge.api_common import route

    async def health(req):
        return json_reply(
            {
                "status": "UP",
                "version": server.version,
                "loops": {loop.name: loop.health() for loop in server.platform.loops},
            }
        )

    async def live(req):
        return json_reply({"status": "LIVE"})

    async def ready(req):
        try:
            await server.store.fetchone("SELECT 1 AS ok")
        except StoreError as e:
            return json_reply({"status": "NOT_READY", "reason": str(e)}, 503)
        if any(not loop.running for loop in server.platform.loops):
            return json_reply(
                {"status": "NOT_READY", "reason": "a background loop is not running"}, 503
            )
        return json_reply({"status": "READY"})

    async def metrics(req):
        return Response(server.platform.metrics.render(), 200, {"Content-Type": CONTENT_TYPE})

    for handler, paths in (
        (health, ("/health", "/q/health")),
        (live, ("/health/live",)),
        (ready, ("/health/ready", "/health/startup")),
        (metrics, ("/metrics", "/q/metrics")),
    ):
        for path in paths:
            route(api, path)(handler)
