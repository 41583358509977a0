"""The machine's Redis for tests (shared/services.md): `FC_TEST_REDIS_URL`, default
redis://127.0.0.1:6379. Where it is not reachable, tests skip with the reason, except under
FC_TEST_REQUIRE_SERVICES=1 (CI), where they fail.

`LinkProxy` stands between a client and Redis on loopback, so that a test can take Redis away
from one instance only: `refuse()` closes every connection and refuses new ones, `hang()`
keeps connections open but lets no byte through (a network that stops answering), `restore()`
forwards again."""

import asyncio
import os
import uuid
from urllib.parse import urlsplit

from tests.support.services import service_missing

REDIS_URL = os.environ.get("FC_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def require_redis():
    """The Redis URL, once Redis answers PING; else skip (or fail under CI)."""
    try:
        import redis
    except ImportError:
        reason = "the redis package is not installed (pip install -e '.[server]')"
    else:
        try:
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
            try:
                client.ping()
                return REDIS_URL
            finally:
                client.close()
        except Exception as e:
            reason = "Redis is not reachable at %s (set FC_TEST_REDIS_URL): %s" % (REDIS_URL, e)
    service_missing(reason)


def sync_client():
    import redis

    return redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=5)


def unique_key(prefix="fc:test:leader"):
    return "%s:%s" % (prefix, uuid.uuid4().hex[:12])


def delete_keys(key):
    client = sync_client()
    try:
        client.delete(key, key + ":released")
    finally:
        client.close()


class LinkProxy:
    """A TCP proxy to Redis inside the test's event loop: `url` is what the client uses."""

    def __init__(self, redis_url=REDIS_URL):
        parts = urlsplit(redis_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.path = parts.path
        self.mode = "forward"
        self.server = None
        self.port = None
        self._links = []  # (client writer, upstream writer, tasks)

    @property
    def url(self):
        return "redis://127.0.0.1:%d%s" % (self.port, self.path)

    async def start(self):
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader, writer):
        if self.mode == "refuse":
            writer.transport.abort()
            return
        if self.mode == "hang":
            self._links.append((writer, None, []))
            return  # accepted, never answered
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        link = (writer, up_writer, [])
        link[2].append(asyncio.ensure_future(self._pipe(reader, up_writer)))
        link[2].append(asyncio.ensure_future(self._pipe(up_reader, writer)))
        self._links.append(link)

    async def _pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                while self.mode == "hang":  # swallow nothing, deliver nothing
                    await asyncio.sleep(0.01)
                if self.mode == "refuse":
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if self.mode != "hang":
                writer.transport.abort()

    def refuse(self):
        """Close every connection now and refuse new ones (Redis went away)."""
        self.mode = "refuse"
        for client, upstream, tasks in self._links:
            client.transport.abort()
            if upstream is not None:
                upstream.transport.abort()
            for task in tasks:
                task.cancel()
        self._links = []

    def hang(self):
        """Keep connections open but let nothing through (a network that stops answering)."""
        self.mode = "hang"

    def restore(self):
        self.mode = "forward"

    async def close(self):
        self.refuse()
        self.server.close()
