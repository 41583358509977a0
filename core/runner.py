"""Run a router from a JSON file: pools, memory queues, and optionally messages to deliver.
This is what `python -m flowcatalyst.core CONFIG.json` (or `micropython -m ...`) does.

The file is a router config (processingPools, queues) whose queues are memory queues, with
optional extras:
  queues[].maxReceiveCount, waitSeconds, maxMessages, dedupWindowSeconds   memory-queue settings
  mediator: {maxAttempts, retryDelays, connectTimeout, requestTimeout, caFile}
  messages: [pointer, ...]   published at start (a pointer may name its "queue")
  shutdownTimeout: seconds to let deliveries finish on stop (default 30)
"""

import asyncio
import sys

from . import jsoncodec
from .compat import MICROPYTHON, sleep
from .config import ConfigError, parse_queue_options, parse_router_config
from .httpclient import HttpClient
from .log import logger
from .mediator import HttpMediator
from .memqueue import MemoryQueue
from .message import MessageError
from .router import Router, RouterSettings

USAGE = """usage: python -m flowcatalyst.core CONFIG.json [--stdin] [--until-idle]

Runs a FlowCatalyst router from CONFIG.json: processing pools and in-memory queues
(SQS-FIFO semantics), delivering message pointers over HTTP.

  --stdin        also read message pointers from standard input, one JSON object per line
                 (a "queue" key picks the queue; default the first)
  --until-idle   exit once every message is delivered or dead-lettered (after the end of
                 standard input with --stdin); print a JSON summary on standard output.
                 Exit status 0 if nothing was dead-lettered or invalid, else 1
  -h, --help     show this help

Without --until-idle the router runs until interrupted (Ctrl-C / SIGTERM), then drains.
Environment: FC_LOG_LEVEL (INFO), FC_LOG_FORMAT (json|text), FC_CA_FILE (TLS trust store).
"""

_log = logger("runner")


class RunnerError(Exception):
    pass


def load_file(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise RunnerError("cannot read %s: %s" % (path, e))
    try:
        return jsoncodec.loads(text)
    except ValueError as e:
        raise RunnerError("%s is not valid JSON: %s" % (path, e))


def _num(data, key, default, path):
    value = data.get(key, default)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise RunnerError("%s.%s: must be a number >= 0" % (path, key))
    return value


def build(data):
    """(router, queues by name, messages to publish) from the decoded file."""
    try:
        config = parse_router_config(data)
    except ConfigError as e:
        raise RunnerError("config: %s" % e)
    if not config.queues:
        raise RunnerError("config: queues: at least one queue is needed")
    queues = {}
    for i, qc in enumerate(config.queues):
        path = "queues[%d]" % i
        if "://" in qc.uri and not qc.uri.startswith("memory://"):
            raise RunnerError("%s.queueUri: the core runs memory queues only (memory://NAME or a bare name), got %r" % (path, qc.uri))
        try:
            options = parse_queue_options(data["queues"][i], path)
        except ConfigError as e:
            raise RunnerError("config: %s" % e)
        queues[qc.name] = MemoryQueue(qc.name, visibility_timeout=qc.visibility_timeout, **options)
    med = data.get("mediator") or {}
    if not isinstance(med, dict):
        raise RunnerError("mediator: must be an object")
    delays = med.get("retryDelays", [1, 2, 3])
    if not isinstance(delays, list) or any(isinstance(d, bool) or not isinstance(d, (int, float)) or d < 0 for d in delays):
        raise RunnerError("mediator.retryDelays: must be an array of numbers >= 0")
    client = HttpClient(
        connect_timeout=_num(med, "connectTimeout", 10, "mediator"),
        request_timeout=_num(med, "requestTimeout", 30, "mediator"),
        ca_file=med.get("caFile"),
    )
    mediator = HttpMediator(client, max_attempts=max(int(_num(med, "maxAttempts", 3, "mediator")), 1), retry_delays=delays)
    settings = RouterSettings(shutdown_timeout=_num(data, "shutdownTimeout", 30, "config"))
    router = Router(consumer_factory=lambda qc: queues[qc.name], mediator=mediator, settings=settings)
    messages = data.get("messages") or []
    if not isinstance(messages, list):
        raise RunnerError("messages: must be an array of message pointers")
    return router, config, queues, messages


def publish(queues, default_queue, item, where):
    """Publish one pointer; returns True if accepted or duplicate, False (reported) if invalid."""
    name = default_queue
    if isinstance(item, dict) and "queue" in item:
        name = item["queue"]
    queue = queues.get(name)
    try:
        if queue is None:
            raise MessageError("queue", "no queue named %r" % (name,))
        queue.put(item)
        return True
    except MessageError as e:
        _log.error("invalid message: not published", where=where, error=str(e))
        return False


async def read_stdin(queues, default_queue, stats):
    if MICROPYTHON:
        reader = asyncio.StreamReader(sys.stdin)
        readline = reader.readline
    else:

        async def readline():
            return await asyncio.to_thread(sys.stdin.buffer.readline)

    number = 0
    while True:
        line = await readline()
        if not line:
            return
        number += 1
        line = line.strip()
        if not line:
            continue
        try:
            item = jsoncodec.loads(line)
        except (ValueError, UnicodeError) as e:
            _log.error("invalid message: not published", where="stdin line %d" % number, error="not JSON: %s" % e)
            stats["invalid"] += 1
            continue
        if not publish(queues, default_queue, item, "stdin line %d" % number):
            stats["invalid"] += 1


def _idle(router, queues):
    return router.is_idle() and all(len(q) == 0 for q in queues.values())


async def run(path, use_stdin=False, until_idle=False):
    router, config, queues, messages = build(load_file(path))
    default_queue = config.queues[0].name
    stats = {"invalid": 0}
    for i, item in enumerate(messages):
        if not publish(queues, default_queue, item, "messages[%d]" % i):
            stats["invalid"] += 1
    await router.start(config)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    try:
        if use_stdin:
            await read_stdin(queues, default_queue, stats)
        if until_idle:
            while not _idle(router, queues) and not stop.is_set():
                await sleep(0.02)
        else:
            await stop.wait()
    finally:
        await router.stop()
    summary = summarize(queues, stats)
    if until_idle:
        sys.stdout.write(jsoncodec.dumps(summary) + "\n")
    return 0 if not summary["deadLettered"] and not summary["invalid"] else 1


def summarize(queues, stats):
    total = {"published": 0, "duplicates": 0, "acked": 0, "nacked": 0, "deferred": 0, "deadLettered": 0, "invalid": stats["invalid"]}
    for q in queues.values():
        for key in ("published", "duplicates", "acked", "nacked", "deferred"):
            total[key] += q.counters[key]
        total["deadLettered"] += q.dead_lettered_total
    return total


def _install_signal_handlers(stop):
    if MICROPYTHON:
        return  # Ctrl-C raises KeyboardInterrupt there
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows
            pass


def main(argv):
    args = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    if "-h" in flags or "--help" in flags:
        sys.stdout.write(USAGE)
        return 0
    unknown = [f for f in flags if f not in ("--stdin", "--until-idle")]
    if unknown or len(args) != 1:
        sys.stderr.write(("unknown option %s\n" % unknown[0] if unknown else "") + USAGE)
        return 2
    try:
        return asyncio.run(run(args[0], "--stdin" in flags, "--until-idle" in flags))
    except RunnerError as e:
        sys.stderr.write("flowcatalyst: %s\n" % e)
        return 2
    except KeyboardInterrupt:
        return 130
