"""A real SQS-compatible server for tests: moto's server (`python -m moto.server`, from the
dev extra's `moto[server]`) in a subprocess on a free loopback port.

Fixtures (exposed by tests/conftest.py):

    moto_server   session-wide MotoServer: `endpoint`, `client(**config)` (a botocore SQS
                  client), `create_queue(name, fifo=False, **attributes)` -> queue URL (names
                  get a unique suffix, so tests never share a queue)
    sqs           the same server, with the test's AWS environment pointing at it: dummy
                  credentials, AWS_DEFAULT_REGION=us-east-1, AWS_ENDPOINT_URL_SQS, no AWS config
                  files, no instance metadata, no AWS_REGION / AWS_PROFILE / AWS_ENDPOINT_URL

`TcpProxy` forwards loopback connections to a server and can be cut (`down()` / `up()`), to
make calls fail for real on the network (moto keeps its state in memory: restarting it would
lose the queues).

moto 5.2.5 is slow (a few ms per call, slower with a backlog) and gets FIFO redelivery wrong
when several messages of one group come back after a visibility timeout (only the last of
them is received; see /work/shared/notes/toolchain.md): keep queues short, and test FIFO
redelivery only where one message of a group is in flight.
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

from tests.support.ports import free_port

REGION = "us-east-1"
_ENV_REMOVED = ("AWS_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE")


class MotoServer:
    def __init__(self):
        self.process = None
        self.port = None
        self.endpoint = None
        self._log = None
        self._admin = None

    def start(self, timeout=30.0):
        for _ in range(3):  # the free port may be taken before moto binds it
            self.port = free_port()
            self.endpoint = "http://127.0.0.1:%d" % self.port
            self._log = tempfile.TemporaryFile()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
            if self._wait_until_up(timeout):
                return self
            self.stop()
        raise RuntimeError("moto server did not start:\n%s" % self.output())

    def _wait_until_up(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1) as r:
                    if r.status == 200:
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def output(self):
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def environment(self):
        """The AWS environment variables a test sets to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_SQS": self.endpoint,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self, endpoint=None, **config):
        """A botocore SQS client for this server (or `endpoint`, e.g. a TcpProxy's) that needs
        no environment; `config`: botocore Config options."""
        import botocore.session
        from botocore.config import Config

        session = botocore.session.get_session()
        return session.create_client(
            "sqs",
            region_name=REGION,
            endpoint_url=endpoint or self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(**config) if config else None,
        )

    def create_queue(self, name="q", fifo=False, **attributes):
        """A new queue (its name made unique); returns its URL."""
        if self._admin is None:
            self._admin = self.client()
        name = "%s-%s" % (name, uuid.uuid4().hex[:10])
        attrs = {k: str(v) for k, v in attributes.items()}
        if fifo:
            name += ".fifo"
            attrs["FifoQueue"] = "true"
            attrs.setdefault("ContentBasedDeduplication", "false")
        return self._admin.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]


def moto_available():
    try:
        import botocore  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as e:
        return "moto[server] and botocore are needed for the SQS tests (pip install -e '.[server,dev]'): %s" % e
    return None


def set_environment(monkeypatch, server):
    for name in _ENV_REMOVED:
        monkeypatch.delenv(name, raising=False)
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)


class TcpProxy:
    """Forwards TCP connections from a loopback port to `port`, a thread per direction.
    `down()` closes every open connection and closes new ones at once until `up()`."""

    def __init__(self, port, host="127.0.0.1"):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.is_up = True
        self._lock = threading.Lock()
        self._sockets = set()
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            if not self.is_up:
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._sockets.update((conn, upstream))
            threading.Thread(target=self._pump, args=(conn, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, conn), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source, sink)

    def _close(self, *socks):
        with self._lock:
            for s in socks:
                self._sockets.discard(s)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def down(self):
        self.is_up = False
        with self._lock:
            socks = list(self._sockets)
        self._close(*socks)

    def up(self):
        self.is_up = True

    def close(self):
        self.down()
        self.listener.close()
