"""A real HTTP/1.1 target on loopback for tests: an asyncio server in a background thread.

Behaviour comes from the path, so scenarios running in another process (MicroPython) can
use it by URL alone, or from a handler a test installs with `on(path, handler)`:

  /ok                     200 {"ack": true}
  /status/CODE            that status; ?retry_after=V adds a Retry-After header
  /ackfalse?delay=N       200 {"ack": false, "delaySeconds": N}
  /slow/MS                waits MS milliseconds, then 200
  /flaky/N/KEY            the first N requests for KEY answer 500, later ones 200
  /redirect/CODE?to=PATH  answers CODE with Location: PATH
  anything else           200 with an empty body

Every request is recorded (method, path, headers, body, arrival time, and the raw request
line and header bytes as `head`) in `requests`.
"""

import asyncio
import json
import threading
import time
from urllib.parse import parse_qs, urlsplit


class Recorded:
    __slots__ = ("method", "path", "query", "headers", "body", "at", "head")

    def __init__(self, method, path, query, headers, body, at, head=b""):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.at = at
        self.head = head  # the request line and header lines exactly as received

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%s %s %r>" % (self.method, self.path, self.body[:60])


class Target:
    def __init__(self):
        self.requests = []
        self.handlers = {}
        self.port = None
        self._counts = {}
        self._loop = None
        self._server = None
        self._thread = None
        self._lock = threading.Lock()
        self.connections = 0

    # -- control from the test thread -------------------------------------------------------------

    def start(self):
        ready = threading.Event()

        def serve():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="http-target", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self):
        if self._loop is None:
            return

        async def shutdown():
            self._server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop = None

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def on(self, path, handler):
        """`handler(recorded)` returns (status, headers dict, body bytes|str|dict), optionally
        as a coroutine (to delay its answer)."""
        self.handlers[path] = handler

    def received(self, path=None, prefix=None):
        with self._lock:
            items = list(self.requests)
        if path is not None:
            items = [r for r in items if r.path == path]
        if prefix is not None:
            items = [r for r in items if r.path.startswith(prefix)]
        return items

    def wait_for(self, count, path=None, prefix=None, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(path, prefix)
            if len(got) >= count:
                return got
            time.sleep(0.01)
        raise AssertionError("expected %d requests to %s, got %d" % (count, path or prefix or "any path", len(self.received(path, prefix))))

    def reset(self):
        with self._lock:
            self.requests = []
            self._counts = {}

    # -- serving ------------------------------------------------------------------------------------

    async def _handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                head = line
                while True:
                    h = await reader.readline()
                    head += h
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                parts = urlsplit(target)
                rec = Recorded(method, parts.path, parse_qs(parts.query), headers, body, time.monotonic(), head)
                with self._lock:
                    self.requests.append(rec)
                status, out_headers, out_body = await self._respond(rec)
                if isinstance(out_body, dict):
                    out_body = json.dumps(out_body)
                if isinstance(out_body, str):
                    out_body = out_body.encode()
                head = "HTTP/1.1 %d X\r\nContent-Length: %d\r\n" % (status, len(out_body))
                for k, v in out_headers.items():
                    head += "%s: %s\r\n" % (k, v)
                writer.write(head.encode() + b"\r\n" + out_body)
                await writer.drain()
                if out_headers.get("Connection") == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            return  # a client went away, or the target is stopping
        finally:
            writer.close()

    async def _respond(self, rec):
        handler = self.handlers.get(rec.path)
        if handler is not None:
            result = handler(rec)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        path = rec.path
        if path == "/ok":
            return 200, {}, {"ack": True}
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            headers = {}
            if "retry_after" in rec.query:
                headers["Retry-After"] = rec.query["retry_after"][0]
            return code, headers, {}
        if path == "/ackfalse":
            return 200, {}, {"ack": False, "delaySeconds": int(rec.query.get("delay", ["30"])[0])}
        if path.startswith("/slow/"):
            await asyncio.sleep(int(path.split("/")[2]) / 1000)
            return 200, {}, {"ack": True}
        if path.startswith("/flaky/"):
            _, _, n, key = path.split("/", 3)
            with self._lock:
                seen = self._counts[key] = self._counts.get(key, 0) + 1
            return (500, {}, {}) if seen <= int(n) else (200, {}, {"ack": True})
        if path.startswith("/redirect/"):
            return int(path.split("/")[2]), {"Location": rec.query["to"][0]}, b""
        return 200, {}, b""
