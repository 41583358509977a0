"""The blocking side of the SQS adapter (sqs.py): the botocore client, the threads its calls
run in, and the batching of answers.

- `make_client` creates a botocore SQS client the standard AWS ways: credentials from the
  environment, the shared config and credentials files (`AWS_PROFILE`) or an instance role;
  the endpoint from `AWS_ENDPOINT_URL_SQS` (or `AWS_ENDPOINT_URL`, or a profile's `services`
  section) — botocore resolves all of these itself. It only adds the region: the queue URL's
  (`sqs.<region>.amazonaws.com`), else `AWS_REGION`, else botocore's (`AWS_DEFAULT_REGION`,
  the profile), else a clear error. One botocore session serves every client (a second client
  then costs ~10 ms instead of ~120 ms).
- `Lane` is a daemon thread that runs one blocking call at a time: each queue's long poll gets
  its own, so a 20 s ReceiveMessage never holds a thread that another queue's deletes need,
  and never keeps the process from exiting (executor threads are joined at exit).
- `shared_executor()` runs every other call (delete, change visibility, send, attributes) of
  all queues: short calls, bounded by the client's timeouts.
- `Batcher` gathers the calls of one event-loop turn into batch requests of ten entries
  (SQS's limit) and hands each caller its own entry's outcome.
"""

import asyncio
import os
import queue
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from flowcatalyst.core.ports import ReceiptHandleError

MAX_BATCH = 10  # entries per SQS batch request
READ_TIMEOUT = 25  # s: a 20 s long poll plus headroom (the other implementations' operation timeout)
CONNECT_TIMEOUT = 10
EXECUTOR_THREADS = 8

# sqs.<region>.amazonaws.com, sqs-fips.<region>..., vpce-….sqs.<region>.vpce.amazonaws.com, .cn
_REGION = r"([a-z]{2}(?:-[a-z]+)+-\d+)"
_AWS_HOST = re.compile(r"^(?:.+\.)?sqs(?:-fips)?\." + _REGION + r"\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$")
_LEGACY_HOST = re.compile(r"^" + _REGION + r"\.queue\.amazonaws\.com(?:\.cn)?$")

# Codes that mean "this receipt handle no longer names an in-flight message".
_HANDLE_CODES = ("ReceiptHandleIsInvalid", "InvalidReceiptHandle", "MessageNotInflight", "InvalidIdFormat")


class SqsError(Exception):
    """An SQS call or batch entry that failed; `code` is SQS's error code (or the exception's
    class name for a transport failure)."""

    def __init__(self, code, text):
        super().__init__("%s: %s" % (code, text))
        self.code = code
        self.text = text


def entry_error(code, text):
    """The exception for one failed batch entry or call."""
    code = code or "Unknown"
    if code.rsplit(".", 1)[-1] in _HANDLE_CODES:
        return ReceiptHandleError("%s: %s" % (code, text))
    return SqsError(code, text)


def call_error(e):
    """A whole request failed: the exception to hand to each of its entries."""
    response = getattr(e, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return entry_error(response["Error"].get("Code"), response["Error"].get("Message", str(e)))
    return SqsError(type(e).__name__, str(e))


def failures(response):
    """{entry index: exception} for the failed entries of a batch response (Ids are indexes)."""
    return {int(f["Id"]): entry_error(f.get("Code"), f.get("Message", "")) for f in response.get("Failed") or ()}


# -- queue URLs and the client ------------------------------------------------------------------


def region_from_url(queue_url):
    """The region an AWS queue URL names in its host, or None (a local or custom endpoint)."""
    host = (urlsplit(queue_url).hostname or "").lower()
    m = _AWS_HOST.match(host) or _LEGACY_HOST.match(host)
    if m:
        return m.group(1)
    if host in ("queue.amazonaws.com", "sqs.amazonaws.com"):
        return "us-east-1"
    return None


def is_sqs_url(uri):
    """True for an http(s) URL on an AWS SQS host (how a consumer factory tells SQS queue
    URIs from others); a local SQS-compatible server's URLs are not recognisable."""
    return uri.startswith(("https://", "http://")) and region_from_url(uri) is not None


def check_queue_url(queue_url):
    parts = urlsplit(queue_url or "")
    name = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if parts.scheme not in ("http", "https") or not parts.hostname or not name:
        raise ValueError("not an SQS queue URL (http(s)://HOST/ACCOUNT/NAME): %r" % queue_url)
    return queue_url


_session = None


def make_client(region=None, read_timeout=READ_TIMEOUT, **config):
    """A botocore SQS client (see the module docstring for where its settings come from);
    `config` adds botocore Config options (e.g. retries)."""
    import botocore.session
    from botocore.config import Config

    global _session
    if _session is None:
        _session = botocore.session.get_session()
    region = region or os.environ.get("AWS_REGION") or _session.get_config_variable("region")
    if not region:
        raise ValueError(
            "no AWS region for SQS: use a queue URL on sqs.<region>.amazonaws.com, or set "
            "AWS_REGION (or AWS_DEFAULT_REGION, or a region in the AWS profile)"
        )
    options = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": read_timeout, "max_pool_connections": EXECUTOR_THREADS + 2}
    options.update(config)
    return _session.create_client("sqs", region_name=region, config=Config(**options))


# -- threads ------------------------------------------------------------------------------------

_executor = None


def shared_executor():
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=EXECUTOR_THREADS, thread_name_prefix="sqs")
    return _executor


class Lane:
    """A daemon thread running blocking calls one at a time, results as asyncio futures."""

    def __init__(self, name):
        self._jobs = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, loop, fn, *args):
        future = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return future

    def close(self):
        """The thread ends after the call it is running (if any)."""
        self._jobs.put(None)

    def _work(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, future, fn, args = job
            try:
                outcome = (True, fn(*args))
            except Exception as e:  # handed to whoever awaits the future
                outcome = (False, e)
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:
                pass  # the event loop is closed: nobody is waiting any more


def _settle(future, outcome):
    if future.done():
        return
    if outcome[0]:
        future.set_result(outcome[1])
    else:
        future.set_exception(outcome[1])


# -- batching -------------------------------------------------------------------------------------


class Batcher:
    """Entries submitted in one event-loop turn go out together, ten to a request.

    `send(entries)` is blocking (it runs in the executor through `run`) and returns
    {index: exception} for the entries that failed; a request that fails as a whole fails each
    of its entries. `submit(entry)` returns a future for that entry alone."""

    def __init__(self, run, send):
        self._run = run
        self._send = send
        self._pending = None
        self._tasks = set()

    def submit(self, entry):
        loop = asyncio.get_running_loop()
        if self._pending is None:
            self._pending = []
            loop.call_soon(self._flush)
        future = loop.create_future()
        self._pending.append((entry, future))
        return future

    def _flush(self):
        items, self._pending = self._pending, None
        for start in range(0, len(items), MAX_BATCH):
            task = asyncio.ensure_future(self._send_chunk(items[start : start + MAX_BATCH]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_chunk(self, chunk):
        try:
            failed = await self._run(self._send, [entry for entry, _ in chunk])
        except Exception as e:
            failed = {i: call_error(e) for i in range(len(chunk))}
        for i, (_, future) in enumerate(chunk):
            if future.done():  # its caller was cancelled
                continue
            if i in failed:
                future.set_exception(failed[i])
            else:
                future.set_result(None)
