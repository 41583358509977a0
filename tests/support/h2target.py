"""A real HTTPS target that speaks HTTP/2 and HTTP/1.1 (ALPN), for testing HTTP/2 delivery:
Hypercorn serving a tiny ASGI app on a loopback socket, in a background thread.

Every request is recorded with the HTTP version it arrived over, as the server saw it
(`scope["http_version"]`: "2" or "1.1"):

  /ok          200 {"ack": true}
  /status/N    that status
  anything     200 with an empty body

    with H2Target(cert_file, key_file) as t:
        t.url("/ok")  ->  https://127.0.0.1:PORT/ok
"""

import asyncio
import json
import socket
import threading
import time


class H2Request:
    __slots__ = ("http_version", "method", "path", "headers", "body", "at")

    def __init__(self, http_version, method, path, headers, body):
        self.http_version = http_version
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.at = time.monotonic()

    def __repr__(self):
        return "<HTTP/%s %s %s>" % (self.http_version, self.method, self.path)


class H2Target:
    def __init__(self, cert_file, key_file, handler=None):
        """`handler(scope, receive, send)`, an ASGI app for HTTP requests, replaces the
        built-in behaviour (requests are then not recorded)."""
        self.handler = handler
        self.cert_file = cert_file
        self.key_file = key_file
        self.requests = []
        self.port = None
        self._lock = threading.Lock()
        self._loop = None
        self._stop = None
        self._thread = None
        self._error = None

    async def app(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self.handler is not None:
            return await self.handler(scope, receive, send)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self._lock:
            self.requests.append(H2Request(scope["http_version"], scope["method"], scope["path"], headers, body))
        status, out = 200, b""
        if scope["path"] == "/ok":
            out = json.dumps({"ack": True}).encode()
        elif scope["path"].startswith("/status/"):
            status = int(scope["path"].split("/")[2])
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    def start(self):
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = Config()
        config.bind = ["fd://%d" % sock.detach()]
        config.certfile = self.cert_file
        config.keyfile = self.key_file
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.5
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._stop = asyncio.Event()

            async def main():
                ready.set()
                await serve(self.app, config, shutdown_trigger=self._stop.wait)

            try:
                self._loop.run_until_complete(main())
            except BaseException as e:  # reported by wait_ready / stop
                self._error = e
                ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="h2-target", daemon=True)
        self._thread.start()
        ready.wait(5)
        self._wait_listening()
        return self

    def _wait_listening(self):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self._error is not None:
                raise self._error
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("the HTTP/2 target did not start")

    def stop(self):
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def url(self, path):
        return "https://127.0.0.1:%d%s" % (self.port, path)

    def received(self, path=None):
        with self._lock:
            items = list(self.requests)
        return [r for r in items if path is None or r.path == path]

    def wait_for(self, count, path=None, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(path)
            if len(got) >= count:
                return got
            time.sleep(0.01)
        raise AssertionError("expected %d requests to %s, got %d" % (count, path or "any path", len(self.received(path))))
