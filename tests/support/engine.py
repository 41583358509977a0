"""Helpers for driving pools and routers in tests (real mediator, real HTTP target)."""

import asyncio
import json
import time

from flowcatalyst.core import (
    BreakerRegistry,
    HttpClient,
    HttpMediator,
    PoolConfig,
    ProcessPool,
    parse_message,
)
from flowcatalyst.core.callback import MessageCallback
from flowcatalyst.core.pool import PoolObserver


def pointer(target_url, id, group=None, mode="IMMEDIATE", pool="P", **extra):
    d = {"id": id, "poolCode": pool, "mediationType": "HTTP", "mediationTarget": target_url, "messageGroupId": group, "dispatchMode": mode}
    d.update(extra)
    return d


def fast_mediator(max_attempts=1, delays=(0.01,), timeout=5.0):
    return HttpMediator(HttpClient(request_timeout=timeout, connect_timeout=1.0), max_attempts=max_attempts, retry_delays=delays)


class Resolutions:
    """Records how each callback was resolved: (id, action, delay, reason)."""

    def __init__(self):
        self.items = []
        self.changed = asyncio.Event()

    def callback(self, message, batch_id=0):
        if isinstance(message, dict):
            message = parse_message(message)

        async def resolve(action, delay, reason):
            self.items.append((message.id, action, delay, reason))
            self.changed.set()

        return MessageCallback(message, batch_id, resolve)

    def of(self, message_id):
        return [i for i in self.items if i[0] == message_id]

    def actions(self):
        return {i[0]: i[1] for i in self.items}

    async def wait(self, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.items) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("only %d of %d resolutions: %r" % (len(self.items), count, self.items))
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


class RecordingObserver(PoolObserver):
    def __init__(self):
        self.outcomes = []

    def delivered(self, pool, message, outcome, seconds):
        self.outcomes.append((message.id, outcome))


def make_pool(code="P", concurrency=4, rpm=None, mediator=None, breakers=None):
    observer = RecordingObserver()
    pool = ProcessPool(PoolConfig(code, concurrency, rpm), fast_mediator() if mediator is None else mediator, BreakerRegistry() if breakers is None else breakers, observer)
    return pool, observer


class Concurrency:
    """A target handler that holds each request for `delay` s and tracks how many overlap."""

    def __init__(self, delay=0.05):
        self.delay = delay
        self.current = 0
        self.peak = 0
        self.order = []

    async def __call__(self, rec):
        self.current += 1
        self.peak = max(self.peak, self.current)
        self.order.append(json.loads(rec.body)["messageId"])
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.current -= 1
        return 200, {}, {"ack": True}


class FailFirst:
    """A target handler: the first `times` deliveries of each listed message id answer
    {"ack": false, "delaySeconds": delay}; everything else is acknowledged."""

    def __init__(self, times_by_id, delay=0):
        self.times = dict(times_by_id)
        self.delay = delay
        self.order = []

    def __call__(self, rec):
        mid = json.loads(rec.body)["messageId"]
        self.order.append(mid)
        if self.times.get(mid, 0) > 0:
            self.times[mid] -= 1
            return 200, {}, {"ack": False, "delaySeconds": self.delay}
        return 200, {}, {"ack": True}


async def wait_until(predicate, timeout=5.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %ss" % timeout)
        await asyncio.sleep(interval)


def router_with_queues(queues, pools, mediator=None, **settings):
    """A Router whose consumer factory hands out the given MemoryQueues by name, started with
    a config of `pools` (list of PoolConfig) and those queues."""
    from flowcatalyst.core import QueueConfig, Router, RouterConfig, RouterSettings

    s = RouterSettings(**settings)
    router = Router(consumer_factory=lambda qc: queues[qc.name], mediator=mediator or fast_mediator(), settings=s)
    config = RouterConfig(pools, [QueueConfig("memory://" + name, name, visibility_timeout=q.visibility_timeout) for name, q in queues.items()])
    return router, config
