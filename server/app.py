"""The server's router: a RouterApp (edge/routerapp.py) whose queues are SQS, NATS JetStream or
SQLite queues (server/queues.py picks the adapter by URI), delivering through the core's HTTP
client or, with FC_HTTP_CLIENT=httpx, an httpx client per pool (HTTP/2 with FC_HTTP2=true).
With FC_STANDBY_ENABLED=true it polls only while it holds the Redis lock (server/standby.py);
on standby it still serves health, metrics and monitoring.
"""

from fnmatch import fnmatchcase
from urllib.parse import parse_qs

from flowcatalyst.core.config import ConfigError
from flowcatalyst.core.mediator import HttpMediator
from flowcatalyst.edge.app import SqliteQueues, resolve_queue_uri
from flowcatalyst.edge.routerapp import RouterApp, StartupError

from .queues import NATS, SQLITE, SQS, queue_kind


class RouterServerApp(RouterApp):
    name = "router"

    def __init__(self, settings):
        self.sqlite = SqliteQueues(settings.sqlite_sync)
        self.standby = None
        self._core_mediator = None
        RouterApp.__init__(self, settings)

    # -- delivery -------------------------------------------------------------------------------

    @property
    def mediator_factory(self):
        """One mediator per pool whenever some pool delivers through httpx (one httpx client per
        pool, router spec §4.3); None otherwise: every pool then shares the core client."""
        s = self.settings
        return self._pool_mediator if s.http_client == "HTTPX" or s.httpx_pools else None

    def uses_httpx(self, pool_code):
        """FC_HTTP_CLIENT=httpx for every pool, or FC_HTTPX_POOLS naming this one (a code or a
        shell-style pattern such as PARTNER-*)."""
        s = self.settings
        if s.http_client == "HTTPX":
            return True
        return any(fnmatchcase(pool_code, pattern) for pattern in s.httpx_pools or ())

    def _pool_mediator(self, pool_config):
        if not self.uses_httpx(pool_config.code):
            if self._core_mediator is None:  # the other pools share the core client, as without FC_HTTPX_POOLS
                self._core_mediator = self.make_mediator()
            return self._core_mediator
        from .httpxtransport import HttpxTransport

        s = self.settings
        return HttpMediator(HttpxTransport(http2=s.http2, connect_timeout=s.connect_timeout, request_timeout=s.request_timeout))

    # -- queues ---------------------------------------------------------------------------------

    def check_queue(self, queue_config, options):
        kind = queue_kind(queue_config.uri)
        if kind == SQLITE:
            if "://" not in (queue_config.uri or "") and not self.settings.db_path:
                raise ConfigError("queueUri", "a bare queue name (%r) is an SQLite queue in FC_DB_PATH, which is not set" % queue_config.uri)
            resolve_queue_uri(queue_config.uri, queue_config.name, self.settings.db_path)
        elif options.get("max_messages") is not None:
            raise ConfigError("maxMessages", "only memory queues take a message limit")

    def make_consumer(self, queue_config, options):
        kind = queue_kind(queue_config.uri)
        if kind == SQS:
            from .sqs import SqsQueue

            return SqsQueue(queue_config.uri, visibility_timeout=queue_config.visibility_timeout)
        if kind == NATS:
            from .natsqueue import NatsQueue, NatsSettings

            nats = NatsSettings.from_uri(queue_config.uri)
            if "ack-wait-secs" not in parse_qs(queue_config.uri.partition("?")[2]):
                nats.ack_wait = float(queue_config.visibility_timeout)  # JetStream's visibility timeout
            return NatsQueue(nats)
        path, name = resolve_queue_uri(queue_config.uri, queue_config.name, self.settings.db_path)
        return self.sqlite.queue(path, name, queue_config, options)

    # -- standby --------------------------------------------------------------------------------

    async def start(self):
        s = self.settings
        if s.standby_enabled:
            self.router.polling = False  # until this instance holds the lock
            self._leader_gauge = self.router.metrics.registry.gauge("fc_standby_leader", "1 while this instance holds the standby lock and polls, else 0")
            self._leader_gauge.set((), 0)
        await RouterApp.start(self)
        if s.standby_enabled:
            try:
                import redis  # noqa: F401 (the standby's client, imported by Standby.start)
            except ImportError as e:
                raise StartupError("FC_STANDBY_ENABLED=true needs the redis package (pip install 'flowcatalyst[server]')") from e
            from .standby import Standby

            self.standby = Standby(
                s.standby_redis_url,
                key=s.standby_lock_key,
                ttl=s.standby_lock_ttl,
                heartbeat=s.standby_heartbeat,
                instance_id=s.instance_id,
                on_leader=self._became_leader,
                on_follower=self._became_follower,
                warnings=self.router.warnings,
            )
            try:
                await self.standby.start()
            except ValueError as e:  # a URL redis-py cannot read
                self.standby = None
                raise StartupError("FC_STANDBY_REDIS_URL: %s" % e) from e

    async def _became_leader(self):
        self._leader_gauge.set((), 1)
        self.router.resume_polling()

    async def _became_follower(self):
        await self.router.pause_polling()
        self._leader_gauge.set((), 0)

    def standby_status(self):
        """`GET /monitoring/standby-status` (router spec §9.2): real values when standby is on."""
        if self.standby is not None:
            return self.standby.status()
        status = RouterApp.standby_status(self)
        if self.settings.standby_enabled:  # starting: the lock has not been tried yet
            status.update(standbyEnabled=True, role="STANDBY")
        return status

    async def stop(self):
        if self.standby is not None:
            await self.standby.stop()  # gives the lock up, so a standby takes over at once
        await RouterApp.stop(self)

    async def close(self):
        self.sqlite.close()
