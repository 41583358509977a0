"""The server's router: a RouterApp (edge/routerapp.py) whose queues are SQS, NATS JetStream or
SQLite queues (server/queues.py picks the adapter by URI), delivering through the core's HTTP
client or, with FC_HTTP_CLIENT=httpx, an httpx client per pool (HTTP/2 with FC_HTTP2=true).
With FC_STANDBY_ENABLED=true it polls only while it holds the Redis lock (server/standby.py);
on standby it still serves health, metrics and monitoring.
"""

from flowcatalyst.core.config import ConfigError
from flowcatalyst.core.mediator import HttpMediator
from flowcatalyst.edge.app import SqliteQueues, resolve_queue_uri
from flowcatalyst.edge.routerapp import RouterApp

from .queues import NATS, SQLITE, SQS, queue_kind


class RouterServerApp(RouterApp):
    name = "router"

    def __init__(self, settings):
        self.sqlite = SqliteQueues(settings.sqlite_sync)
        self.standby = None
        RouterApp.__init__(self, settings)

    # -- delivery -------------------------------------------------------------------------------

    @property
    def mediator_factory(self):
        return self._httpx_mediator if self.settings.http_client == "HTTPX" else None

    def _httpx_mediator(self, pool_config):
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
            from .natsqueue import NatsQueue

            return NatsQueue(queue_config.uri)
        path, name = resolve_queue_uri(queue_config.uri, queue_config.name, self.settings.db_path)
        return self.sqlite.queue(path, name, queue_config, options)

    # -- standby --------------------------------------------------------------------------------

    async def start(self):
        s = self.settings
        if s.standby_enabled:
            self.router.polling = False  # until this instance holds the lock
        await RouterApp.start(self)
        if s.standby_enabled:
            from .standby import Standby

            self.standby = Standby(
                s.standby_redis_url,
                key=s.standby_lock_key,
                ttl=s.standby_lock_ttl,
                heartbeat=s.standby_heartbeat,
                instance_id=s.instance_id,
                on_leader=self._became_leader,
                on_follower=self._became_follower,
            )
            await self.standby.start()

    async def _became_leader(self):
        self.router.resume_polling()

    async def _became_follower(self):
        await self.router.pause_polling()

    async def stop(self):
        if self.standby is not None:
            await self.standby.stop()  # gives the lock up, so a standby takes over at once
        await RouterApp.stop(self)

    async def close(self):
        self.sqlite.close()
