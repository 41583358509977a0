"""A router with its HTTP API, as an application: what the edge edition and the server's router
have in common. Subclasses say where queues come from (`make_consumer`), may give each pool its
own mediator (`mediator_factory`), and may keep the last platform config (`saved_config`,
`save_config`).

Configuration, in order: a config file (`config_file`), a platform (`config_urls`: fetched,
merged, applied, then synced every `config_interval` seconds without restart), or the class's
`default_config` (None: refuse to start without a config). With a saved config, one fetch
attempt decides at start-up: an unreachable platform then does not delay the start (periodic
syncs catch up); without one, the platform gets `config_attempts` x `config_retry_delay` before
the start fails with the reason.
"""

import asyncio
import os
import socket

from flowcatalyst.core import jsoncodec
from flowcatalyst.core.compat import wall_time
from flowcatalyst.core.config import ConfigError, parse_queue_options, parse_router_config
from flowcatalyst.core.httpclient import HttpClient
from flowcatalyst.core.log import logger
from flowcatalyst.core.mediator import HttpMediator
from flowcatalyst.core.router import Router, RouterSettings

VERSION = "0.1.0"

_log = logger("app")  # its lines name the application


def instance_id():
    """This instance's name where no setting gives one (as `/monitoring/consumer-health`)."""
    return os.environ.get("FLOWCATALYST_INSTANCE_ID") or os.environ.get("HOSTNAME") or socket.gethostname()


class StartupError(Exception):
    """Something that keeps the application from starting, said plainly (exit status 2)."""


def load_config_file(path, check_queue=None):
    """(RouterConfig, queue options by name) from a JSON file; ConfigError names the file,
    the JSON path and the reason. `check_queue(queue_config)` may refuse a queue (ConfigError
    with the field, e.g. "queueUri")."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, "cannot read: %s" % e) from e
    try:
        data = jsoncodec.loads(text)
    except ValueError as e:
        raise ConfigError(path, "not valid JSON: %s" % e) from e
    try:
        return config_from_data(data, check_queue)
    except ConfigError as e:
        raise ConfigError("%s: %s" % (path, e.path) if e.path else path, e.reason) from e


def config_from_data(data, check_queue=None):
    if isinstance(data, dict) and isinstance(data.get("queues"), list):
        for item in data["queues"]:  # a queue entry may give a name only
            if isinstance(item, dict) and "queueUri" not in item and "uri" not in item and item.get("queueName"):
                item["queueUri"] = item["queueName"]
    config = parse_router_config(data)
    options = {}
    for i, qc in enumerate(config.queues):
        path = "queues[%d]" % i
        options[qc.name] = parse_queue_options(data["queues"][i], path)
        if check_queue is not None:
            try:
                check_queue(qc, options[qc.name])
            except ConfigError as e:
                raise ConfigError(path + "." + e.path, e.reason) from e
    return config, options


async def listen(api, settings):
    """Serve a microdot `api` on settings.host:port, over TLS with settings.tls_cert/tls_key:
    (asyncio server, its serving task, "http" or "https"); StartupError when it cannot."""
    ssl_context = None
    if settings.tls_cert:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise StartupError("TLS certificate or key: %s" % e) from e
    try:
        server = await api.start_server(settings.host, settings.port, ssl=ssl_context, start_serving=False)
    except OSError as e:
        raise StartupError("cannot listen on %s:%s: %s" % (settings.host, settings.port, e)) from e
    return server, asyncio.create_task(server.serve_forever()), "https" if ssl_context else "http"


class RouterApp:
    name = "router"  # in the start and stop log lines
    version = VERSION
    default_config = None  # used with neither a config file nor a platform (None: refuse)
    config_attempts = 12  # the start-up fetch from a platform without a saved config
    config_retry_delay = 5.0

    def __init__(self, settings):
        self.settings = settings
        self.started_at = wall_time()
        self._queue_options = {}
        self.router = Router(
            consumer_factory=self._consumer_for,
            mediator=None if self.mediator_factory is not None else self.make_mediator(),
            mediator_factory=self.mediator_factory,
            settings=self.router_settings(),
        )
        self.config_sync = None
        self.api = None
        self._server = None
        self._serving = None

    # -- what subclasses decide -------------------------------------------------------------------

    mediator_factory = None  # or a method: pool config -> mediator (one per pool)

    def make_consumer(self, queue_config, options):
        raise NotImplementedError

    def check_queue(self, queue_config, options):
        """Refuse a configured queue this application cannot serve (ConfigError)."""

    def router_settings(self):
        s = RouterSettings(shutdown_timeout=self.settings.shutdown_timeout)
        if self.default_config is not None and not self.settings.config_file and not self.settings.config_urls:
            s.default_pool = self.default_config.pools[0].code  # the built-in config's one pool
        return s

    def make_mediator(self):
        s = self.settings
        return HttpMediator(HttpClient(connect_timeout=s.connect_timeout, request_timeout=s.request_timeout))

    def saved_config(self):
        return None

    @property
    def instance_id(self):
        """This instance's name: the setting where there is one (the server's FC_INSTANCE_ID),
        else FLOWCATALYST_INSTANCE_ID, HOSTNAME or the host name."""
        return getattr(self.settings, "instance_id", None) or instance_id()

    def standby_status(self):
        """`GET /monitoring/standby-status` (router spec §9.2). Without active/standby (the edge,
        or a server router without FC_STANDBY_ENABLED) this instance is always the primary."""
        return {
            "standbyEnabled": False,
            "instanceId": self.instance_id,
            "role": "PRIMARY",
            "redisAvailable": False,
            "currentLockHolder": None,
            "lastSuccessfulRefresh": None,
            "hasWarning": False,
        }

    async def save_config(self, config):
        pass

    # -- queues ---------------------------------------------------------------------------------

    def _consumer_for(self, qc):
        options = self._queue_options.get(qc.name)
        if options is None:
            options = parse_queue_options({})
        self.check_queue(qc, options)
        return self.make_consumer(qc, options)

    @property
    def queues(self):
        """Queues by their configured name, in config order of the router's consumers."""
        return {name: loop.consumer for name, loop in self.router.consumers.items()}

    @property
    def default_queue_name(self):
        queues = self.router.config.queues
        return queues[0].name if queues else None

    async def publish(self, items, queue_name=None):
        """Publish (pointer or Message, dedup_id) pairs into a queue (default: the first one);
        one PublishResult each, once the queue has them. KeyError for an unknown queue."""
        name = queue_name or self.default_queue_name
        queue = self.queues.get(name)
        if queue is None:
            raise KeyError(name)
        return await queue.publish_batch(items)

    # -- configuration --------------------------------------------------------------------------

    def _initial_config(self):
        """The config to start with: the file or the default; None when it comes from a
        platform."""
        s = self.settings
        if s.config_file:
            config, self._queue_options = load_config_file(s.config_file, self.check_queue)
            return config
        if s.config_urls:
            return None
        if self.default_config is None:
            raise StartupError("no configuration: set FC_CONFIG_FILE (or --config) or FLOWCATALYST_CONFIG_URL")
        return self.default_config

    async def _sync_from_platform(self):
        from flowcatalyst.core.configsync import ConfigSync, ConfigSyncError

        s = self.settings
        try:
            self.config_sync = ConfigSync(
                s.config_urls,
                self._apply_fetched,
                interval=s.config_interval,
                attempts=self.config_attempts,
                retry_delay=self.config_retry_delay,
                api_key=s.platform_api_key,
                warnings=self.router.warnings,
            )
        except ValueError as e:
            raise StartupError("FLOWCATALYST_CONFIG_URL: %s" % e) from e
        saved = self.saved_config()
        try:
            await self.config_sync.sync_once(attempts=1 if saved is not None else None)
        except ConfigSyncError as e:
            if saved is None:
                raise StartupError("no config: %s; and no earlier run saved one" % e) from e
            _log.warn("platform unreachable: running the config saved by the last run", error=str(e))
            self.router.warnings.add("CONFIGURATION", "WARN", "Config fetch failed at start; running the saved config: %s" % e, "App")
            await self.router.apply_config(saved)
        self.config_sync.start()

    async def _apply_fetched(self, config):
        summary = await self.router.apply_config(config)
        await self.save_config(config)
        return summary

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self):
        """Start routing and serve the API; StartupError if something is in the way."""
        await self.start_routing()
        await self.serve_api()

    async def start_routing(self):
        """Take the configuration and start the router (without the API)."""
        try:
            config = self._initial_config()
        except ConfigError as e:
            raise StartupError("config: %s" % e) from e
        await self.router.start(config)
        if config is None:
            await self._sync_from_platform()

    async def serve_api(self, api=None):
        """Serve `api` (default: this router's own, edge/api.py) on the configured address."""
        if api is None:
            from .api import create_api

            api = create_api(self)
        self.api = api
        s = self.settings
        self._server, self._serving, scheme = await listen(api, s)
        _log.info(
            "%s started" % self.name,
            api="%s://%s:%s" % (scheme, s.host, self.port),
            pools=[p.code for p in self.router.config.pools],
            queues=[q.name for q in self.router.config.queues],
            auth=s.auth_mode,
        )

    @property
    def port(self):
        """The port the API listens on (the real one when started with port 0)."""
        return self._server.sockets[0].getsockname()[1] if self._server else self.settings.port

    async def stop(self):
        """Stop taking requests, stop polling, let deliveries finish (bounded), close."""
        if self._server is not None:
            self._server.close()
        if self._serving is not None:
            self._serving.cancel()
        history = getattr(self.api, "queue_history_task", None)
        if history is not None:
            history.cancel()
        if self.config_sync is not None:
            await self.config_sync.stop()
        await self.router.stop()
        await self.close()
        _log.info("%s stopped" % self.name)

    async def close(self):
        """Release what the subclass opened (after the router has stopped)."""
