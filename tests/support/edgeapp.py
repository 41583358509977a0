"""A real EdgeApp for tests: started in a background thread with its own event loop, on port 0
(the real port is `runner.port`), with a database in a temporary directory. Tests talk to it
over HTTP with httpx, as any client would.

    with EdgeRunner(tmp_path, config={...}, auth_mode="TOKEN", api_token="t") as edge:
        httpx.get(edge.url("/health"))
"""

import asyncio
import json
import threading
import time

import httpx

from flowcatalyst.edge.app import EdgeApp
from flowcatalyst.edge.settings import EdgeSettings


class EdgeRunner:
    """Runs an EdgeApp, or another RouterApp given as `app_class` with its `settings_class`."""

    def __init__(self, tmp_path, config=None, name="edge", app_class=EdgeApp, settings_class=EdgeSettings, **settings):
        self.app_class = app_class
        self.tmp_path = tmp_path
        values = {"db_path": str(tmp_path / ("%s.db" % name)), "port": 0, "shutdown_timeout": 1.0}
        if config is not None:
            path = tmp_path / ("%s-config.json" % name)
            path.write_text(json.dumps(config))
            values["config_file"] = str(path)
        values.update(settings)
        self.settings = settings_class(**values)
        self.app = None
        self.loop = None
        self._thread = None
        self.error = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self):
        ready = threading.Event()

        def serve():
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.app = self.app_class(self.settings)
                self.loop.run_until_complete(self.app.start())
            except BaseException as e:  # reported to the test thread
                self.error = e
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

        self._thread = threading.Thread(target=serve, name="edge", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise AssertionError("the edge did not start within 10 s")
        if self.error is not None:
            raise self.error
        return self

    def stop(self):
        if self.loop is None or self.loop.is_closed() or self.error is not None:
            return
        self.call(self.app.stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- access ---------------------------------------------------------------------------------

    @property
    def port(self):
        return self.app.port

    @property
    def router(self):
        return self.app.router

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def client(self, **kwargs):
        return httpx.Client(base_url=self.url(""), timeout=10, **kwargs)

    def call(self, coro, timeout=10):
        """Run a coroutine in the edge's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn, timeout=10):
        """Call fn() in the edge's loop (to read router state without racing it)."""

        async def wrapper():
            return fn()

        return self.call(wrapper(), timeout)

    def wait_until(self, predicate, timeout=10.0, what="condition"):
        """Poll `predicate()` (run in the edge's loop: it must not block) until it is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.run(predicate)
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError("timed out waiting for %s" % what)


def eventually(predicate, timeout=10.0, what="condition"):
    """Poll `predicate()` in the calling thread (e.g. over HTTP) until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for %s" % what)


def pointer(target_url, id, **extra):
    d = {"id": id, "mediationType": "HTTP", "mediationTarget": target_url}
    d.update(extra)
    return d
