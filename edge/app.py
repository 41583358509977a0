"""The edge edition: a RouterApp (routerapp.py) whose queues are SQLite queues.

Queue URIs: a bare name (or no URI) is a queue of that name in the main database (`--db`);
`sqlite:///abs/path.db?queue=name` or `sqlite://relative/path.db?queue=name` is a queue in
another file. Without a config file or platform it runs one pool DEFAULT and one queue
`default`. The last platform config that applied is kept in the main database, so an edge host
that starts while the platform is unreachable runs with it (store-and-forward must not depend
on the network).
"""

import os

from flowcatalyst.core import jsoncodec
from flowcatalyst.core.config import (
    ConfigError,
    PoolConfig,
    QueueConfig,
    RouterConfig,
    parse_router_config,
)

from .routerapp import VERSION, RouterApp, StartupError, config_from_data, load_config_file  # noqa: F401 (re-exported)
from .sqlitequeue import SqliteQueue
from .sqlstore import SqliteStore

DEFAULT_CONFIG = RouterConfig([PoolConfig("DEFAULT", 10)], [QueueConfig("default", "default")])


def resolve_queue_uri(uri, name, main_db):
    """(database path, queue name) for a queue entry of the config; ConfigError for a URI that
    is not an SQLite queue."""
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


class SqliteQueues:
    """The SQLite databases of an application (one store per file) and queues in them."""

    def __init__(self, synchronous):
        self.synchronous = synchronous
        self._stores = {}

    def store(self, path):
        key = os.path.abspath(path)
        store = self._stores.get(key)
        if store is None:
            store = self._stores[key] = SqliteStore(path, self.synchronous)
        return store

    def queue(self, path, name, queue_config, options):
        options = {k: v for k, v in options.items() if k != "max_messages"}  # refused by check_queue
        return SqliteQueue(self.store(path), name, visibility_timeout=queue_config.visibility_timeout, **options)

    def close(self):
        for store in self._stores.values():
            store.close()


class EdgeApp(RouterApp):
    name = "edge"
    default_config = DEFAULT_CONFIG

    def __init__(self, settings):
        self.sqlite = SqliteQueues(settings.sqlite_sync)
        self.store = self.sqlite.store(settings.db_path)
        self.store.db.execute("CREATE TABLE IF NOT EXISTS edge_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        RouterApp.__init__(self, settings)

    def check_queue(self, queue_config, options):
        resolve_queue_uri(queue_config.uri, queue_config.name, "")
        if options.get("max_messages") is not None:
            raise ConfigError("maxMessages", "not supported by SQLite queues (their limit is the disk)")

    def make_consumer(self, queue_config, options):
        path, name = resolve_queue_uri(queue_config.uri, queue_config.name, self.settings.db_path)
        return self.sqlite.queue(path, name, queue_config, options)

    def saved_config(self):
        rows = self.store.read("SELECT value FROM edge_state WHERE key = 'router_config'")
        return parse_router_config(jsoncodec.loads(rows[0][0])) if rows else None

    async def save_config(self, config):
        def save(db, text):
            db.execute("INSERT OR REPLACE INTO edge_state (key, value) VALUES ('router_config', ?)", (text,))

        await self.store.write(save, jsoncodec.dumps(config.to_dict()))

    async def close(self):
        self.sqlite.close()
