"""The edge edition assembled: SQLite queues, the core's router, the configuration (a file, a
platform URL, or the built-in default) and the HTTP API.

The router consumes the configured queues; the API publishes into them. Queue URIs: a bare
name (or no URI) is a queue of that name in the main database (`--db`);
`sqlite:///abs/path.db?queue=name` or `sqlite://relative/path.db?queue=name` is a queue in
another file. With `FLOWCATALYST_CONFIG_URL` the config comes from the platform and changes
apply without restart; the last config that applied is kept in the database, so an edge host
that starts while the platform is unreachable runs with it (store-and-forward must not depend
on the network).
"""

import asyncio
import os

from flowcatalyst.core import jsoncodec
from flowcatalyst.core.compat import wall_time
from flowcatalyst.core.config import (
    ConfigError,
    PoolConfig,
    QueueConfig,
    RouterConfig,
    parse_queue_options,
    parse_router_config,
)
from flowcatalyst.core.httpclient import HttpClient
from flowcatalyst.core.log import logger
from flowcatalyst.core.mediator import HttpMediator
from flowcatalyst.core.router import Router, RouterSettings

from .sqlitequeue import SqliteQueue
from .sqlstore import SqliteStore

VERSION = "0.1.0"
DEFAULT_CONFIG = RouterConfig([PoolConfig("DEFAULT", 10)], [QueueConfig("default", "default")])

_log = logger("edge")


class StartupError(Exception):
    """Something that keeps the edge from starting, said plainly (exit status 2)."""


def resolve_queue_uri(uri, name, main_db):
    """(database path, queue name) for a queue entry of the config."""
    if not uri or "://" not in uri:
        return main_db, uri or name
    if not uri.startswith("sqlite://"):
        raise ConfigError("queueUri", "the edge runs SQLite queues only (a bare name or sqlite://PATH?queue=NAME), got %r" % uri)
    rest = uri[len("sqlite://") :]
    path, _, query = rest.partition("?")
    queue = name
    for pair in query.split("&") if query else ():
        key, _, value = pair.partition("=")
        if key == "queue" and value:
            queue = value
    if not path:
        raise ConfigError("queueUri", "no database path in %r" % uri)
    return path, queue


def load_config_file(path):
    """(RouterConfig, queue options by name) from a JSON file; ConfigError names the file,
    the JSON path and the reason."""
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
        return config_from_data(data)
    except ConfigError as e:
        raise ConfigError("%s: %s" % (path, e.path) if e.path else path, e.reason) from e


def config_from_data(data):
    if isinstance(data, dict) and isinstance(data.get("queues"), list):
        for item in data["queues"]:  # the edge allows a queue entry with a name only
            if isinstance(item, dict) and "queueUri" not in item and "uri" not in item and item.get("queueName"):
                item["queueUri"] = item["queueName"]
    config = parse_router_config(data)
    options = {}
    for i, qc in enumerate(config.queues):
        path = "queues[%d]" % i
        opts = parse_queue_options(data["queues"][i], path)
        if opts.pop("max_messages") is not None:
            raise ConfigError(path + ".maxMessages", "not supported by SQLite queues (their limit is the disk)")
        try:
            resolve_queue_uri(qc.uri, qc.name, "")
        except ConfigError as e:
            raise ConfigError(path + "." + e.path, e.reason) from e
        options[qc.name] = opts
    return config, options


class EdgeApp:
    config_attempts = 12  # the start-up fetch from a platform without a saved config
    config_retry_delay = 5.0

    def __init__(self, settings):
        self.settings = settings
        self.version = VERSION
        self.started_at = wall_time()
        self._stores = {}
        self._queue_options = {}
        self.store = self._store(settings.db_path)
        self.store.db.execute("CREATE TABLE IF NOT EXISTS edge_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        client = HttpClient(connect_timeout=settings.connect_timeout, request_timeout=settings.request_timeout)
        router_settings = RouterSettings(shutdown_timeout=settings.shutdown_timeout)
        if not settings.config_file and not settings.config_urls:
            router_settings.default_pool = "DEFAULT"  # the built-in config's one pool
        self.router = Router(consumer_factory=self._consumer_for, mediator=HttpMediator(client), settings=router_settings)
        self.config_sync = None
        self.api = None
        self._server = None
        self._serving = None

    # -- queues ---------------------------------------------------------------------------------

    def _store(self, path):
        key = os.path.abspath(path)
        store = self._stores.get(key)
        if store is None:
            store = self._stores[key] = SqliteStore(path, self.settings.sqlite_sync)
        return store

    def _consumer_for(self, qc):
        path, name = resolve_queue_uri(qc.uri, qc.name, self.settings.db_path)
        options = self._queue_options.get(qc.name, {})
        return SqliteQueue(self._store(path), name, visibility_timeout=qc.visibility_timeout, **options)

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
        one PublishResult each, after they are committed. KeyError for an unknown queue."""
        name = queue_name or self.default_queue_name
        queue = self.queues.get(name)
        if queue is None:
            raise KeyError(name)
        return await queue.publish_batch(items)

    # -- configuration --------------------------------------------------------------------------

    def _initial_config(self):
        """The config to start with: the file, or the built-in default; None when it comes
        from a platform (see _sync_from_platform)."""
        s = self.settings
        if s.config_file:
            config, self._queue_options = load_config_file(s.config_file)
            return config
        if s.config_urls:
            return None
        return DEFAULT_CONFIG

    async def _sync_from_platform(self):
        """Fetch and apply the platform's config, then keep syncing. With a config saved by an
        earlier run, one attempt decides: if the platform cannot be reached the edge starts
        with the saved one at once (periodic syncs catch up later), because an edge host must
        deliver what it holds even while it is cut off. Without one, the platform gets the
        full start-up schedule (config_attempts x config_retry_delay) before the start fails."""
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
        saved = self._saved_config()
        try:
            await self.config_sync.sync_once(attempts=1 if saved is not None else None)
        except ConfigSyncError as e:
            if saved is None:
                raise StartupError("no config: %s; and no earlier run saved one" % e) from e
            _log.warn("platform unreachable: running the config saved by the last run", error=str(e))
            self.router.warnings.add("CONFIGURATION", "WARN", "Config fetch failed at start; running the saved config: %s" % e, "Edge")
            await self.router.apply_config(saved)
        self.config_sync.start()

    async def _apply_fetched(self, config):
        summary = await self.router.apply_config(config)
        await self._save_config(config)
        return summary

    async def _save_config(self, config):
        def save(db, text):
            db.execute("INSERT OR REPLACE INTO edge_state (key, value) VALUES ('router_config', ?)", (text,))

        await self.store.write(save, jsoncodec.dumps(config.to_dict()))

    def _saved_config(self):
        rows = self.store.read("SELECT value FROM edge_state WHERE key = 'router_config'")
        return parse_router_config(jsoncodec.loads(rows[0][0])) if rows else None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self):
        """Start routing and serve the API; StartupError if something is in the way."""
        try:
            config = self._initial_config()
        except ConfigError as e:
            raise StartupError("config: %s" % e) from e
        await self.router.start(config)
        if config is None:
            await self._sync_from_platform()
        from .api import create_api

        self.api = create_api(self)
        s = self.settings
        ssl_context = None
        if s.tls_cert:
            import ssl

            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ssl_context.load_cert_chain(s.tls_cert, s.tls_key)
            except (OSError, ssl.SSLError) as e:
                raise StartupError("TLS certificate or key: %s" % e) from e
        try:
            self._server = await self.api.start_server(s.host, s.port, ssl=ssl_context, start_serving=False)
        except OSError as e:
            raise StartupError("cannot listen on %s:%s: %s" % (s.host, s.port, e)) from e
        self._serving = asyncio.create_task(self._server.serve_forever())
        _log.info(
            "edge started",
            api="%s://%s:%s" % ("https" if ssl_context else "http", s.host, self.port),
            db=s.db_path,
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
        for store in self._stores.values():
            store.close()
        _log.info("edge stopped")
