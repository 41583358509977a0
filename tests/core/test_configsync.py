"""Config sync against real config servers on loopback: fetch, retry, merge, apply, periodic."""

import asyncio
import socket
import time

import pytest

from flowcatalyst.core import (
    ConfigSync,
    ConfigSyncError,
    MemoryQueue,
    PoolConfig,
    QueueConfig,
    RouterConfig,
    WarningService,
    fetch_config,
    merge_configs,
)
from tests.support.engine import pointer, router_with_queues, wait_until
from tests.support.target import Target

FAST = {"retry_delay": 0.05, "timeout": 2}


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def target2():
    t = Target().start()
    yield t
    t.stop()


def cfg(pools, queues=(), connections=None):
    """The platform's JSON for pools [(code, concurrency, rpm)] and queues [(name, uri)]."""
    out = {
        "processingPools": [{"code": c, "concurrency": n, "rateLimitPerMinute": r} for c, n, r in pools],
        "queues": [{"queueName": name, "queueUri": uri} for name, uri in queues],
    }
    if connections is not None:
        out["connections"] = connections
    return out


class Served:
    """A config endpoint: answers `fail` times with `status`, then serves `config` (a dict),
    each answer after `delay` seconds. Tests change the attributes while it runs."""

    def __init__(self, config, fail=0, status=500, delay=0.0):
        self.config = config
        self.fail = fail
        self.status = status
        self.delay = delay
        self.requests = []

    async def __call__(self, rec):
        self.requests.append(rec)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail > 0:
            self.fail -= 1
            return self.status, {}, "platform unavailable"
        return 200, {"Content-Type": "application/json"}, self.config


def pool_codes(config):
    return [p.code for p in config.pools]


def config_warnings(warnings, text):
    return [x for x in warnings.list(category="CONFIGURATION") if text in x.message]


# -- merging ----------------------------------------------------------------------------------


def test_merge_is_first_wins_and_reports_conflicting_duplicates():
    a = RouterConfig([PoolConfig("A", 5), PoolConfig("B", 2, 60)], [QueueConfig("sqs://q1", "q1")], 1)
    b = RouterConfig(
        [PoolConfig("A", 9), PoolConfig("B", 2, 60), PoolConfig("C", 1)],
        [QueueConfig("sqs://q1", "q1", connections=3), QueueConfig("sqs://q2", "q2")],
        4,
    )
    merged, conflicts = merge_configs([("http://a/cfg", a), ("http://b/cfg", b)])
    assert pool_codes(merged) == ["A", "B", "C"]
    assert merged.pool("A").concurrency == 5  # the first URL wins
    assert [q.uri for q in merged.queues] == ["sqs://q1", "sqs://q2"]
    assert merged.queues[0].connections == 1
    assert merged.connections == 4  # top-level connections: the largest
    assert len(conflicts) == 2  # the identical pool B is no conflict
    pool_conflict = [c for c in conflicts if c.startswith("pool 'A'")][0]
    assert "kept {concurrency 5, rateLimitPerMinute None} from http://a/cfg" in pool_conflict
    assert "dropped {concurrency 9, rateLimitPerMinute None} from http://b/cfg" in pool_conflict
    queue_conflict = [c for c in conflicts if c.startswith("queue 'sqs://q1'")][0]
    assert "connections 1" in queue_conflict and "connections 3" in queue_conflict


def test_merge_deduplicates_queues_by_uri_and_keeps_names_unique():
    a = RouterConfig([], [QueueConfig("sqs://one", "first-name"), QueueConfig("sqs://two", "two")])
    b = RouterConfig(
        [],
        [
            QueueConfig("sqs://one", "other-name"),  # same URI, other name: dropped, reported
            QueueConfig("sqs://elsewhere", "two"),  # a kept name on another URI: dropped, reported
            QueueConfig("sqs://two", "two"),  # identical: silently deduplicated
            QueueConfig("sqs://three", "three"),
        ],
    )
    merged, conflicts = merge_configs([("http://a", a), ("http://b", b)])
    assert [(q.name, q.uri) for q in merged.queues] == [("first-name", "sqs://one"), ("two", "sqs://two"), ("three", "sqs://three")]
    assert len(conflicts) == 2
    assert conflicts[0].startswith("queue 'sqs://one': kept {queueName first-name")
    assert conflicts[1].startswith("queue name 'two': kept {queueName two, queueUri sqs://two")
    assert "dropped {queueName two, queueUri sqs://elsewhere" in conflicts[1] and conflicts[1].endswith("from http://b")


def test_a_single_source_passes_through():
    a = RouterConfig([PoolConfig("A", 5)], [], 3)
    merged, conflicts = merge_configs([("http://a", a)])
    assert merged is a and conflicts == []
    with pytest.raises(ValueError):
        merge_configs([])


# -- fetching ---------------------------------------------------------------------------------


def test_urls_are_fetched_in_parallel(target, target2):
    target.on("/a", Served(cfg([("A", 1, None)]), delay=0.4))
    target.on("/b", Served(cfg([("B", 1, None)]), delay=0.4))
    target2.on("/c", Served(cfg([("C", 1, None)], connections=2), delay=0.4))
    urls = "%s, %s ,%s" % (target.url("/a"), target.url("/b"), target2.url("/c"))

    async def go():
        started = time.monotonic()
        result = await fetch_config(urls, **FAST)
        return result, time.monotonic() - started

    (config, conflicts), elapsed = run(go())
    assert pool_codes(config) == ["A", "B", "C"] and config.connections == 2 and conflicts == []
    assert 0.4 <= elapsed < 0.9, "three 0.4 s answers took %.2f s: not fetched in parallel" % elapsed


def test_a_url_is_retried_until_it_answers(target):
    served = Served(cfg([("A", 4, 120)]), fail=2, status=503)
    target.on("/config", served)
    config, _ = run(fetch_config([target.url("/config")], attempts=5, **FAST))
    assert config.pool("A").concurrency == 4 and config.pool("A").rate_limit_per_minute == 120
    assert len(served.requests) == 3
    at = [r.at for r in served.requests]
    gaps = [at[i + 1] - at[i] for i in range(len(at) - 1)]
    assert all(g >= 0.04 for g in gaps), gaps  # retry_delay apart


def test_every_kind_of_failure_has_a_clear_reason(target):
    target.on("/badjson", lambda rec: (200, {}, "<html>not json</html>"))
    target.on("/badconfig", lambda rec: (200, {}, cfg([("P", -1, None)])))
    target.on("/snake", lambda rec: (200, {}, {"processing_pools": []}))
    target.on("/slow", Served(cfg([]), delay=2))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = "http://127.0.0.1:%d/config" % s.getsockname()[1]
    urls = [target.url(p) for p in ("/status/503", "/badjson", "/badconfig", "/snake", "/slow")] + [closed]

    with pytest.raises(ConfigSyncError) as info:
        run(fetch_config(urls, attempts=2, retry_delay=0.05, timeout=0.3))
    reasons = dict(info.value.failures)
    assert [u for u, _ in info.value.failures] == urls
    assert reasons[urls[0]] == "HTTP 503: {}"
    assert reasons[urls[1]].startswith("invalid JSON: ")
    assert reasons[urls[2]] == "invalid config: processingPools[0].concurrency: must be >= 0, got -1"
    assert reasons[urls[3]] == "invalid config: processingPools: is required (an array)"
    assert reasons[urls[4]].startswith("timeout")
    assert reasons[urls[5]].startswith("connect")
    assert all(url in str(info.value) for url in urls)
    assert len(target.received("/status/503")) == 2 and len(target.received("/badconfig")) == 2


def test_urls_that_fail_are_left_out_of_the_merge(target):
    target.on("/good", Served(cfg([("A", 1, None)])))
    config, conflicts = run(fetch_config([target.url("/status/500"), target.url("/good")], attempts=1))
    assert pool_codes(config) == ["A"] and conflicts == []


def test_accept_and_api_key_headers(target):
    target.on("/config", Served(cfg([])))
    run(fetch_config(target.url("/config"), api_key="k-123"))
    run(fetch_config(target.url("/config")))
    with_key, without = target.received("/config")
    assert with_key.method == "GET" and with_key.headers["accept"] == "application/json"
    assert with_key.headers["x-api-key"] == "k-123"
    assert "x-api-key" not in without.headers and without.headers["accept"] == "application/json"


# -- ConfigSync ---------------------------------------------------------------------------------


def test_construction_checks_the_urls():
    async def apply(config):
        pass

    sync = ConfigSync(" http://a/x , ,http://b/y,http://a/x", apply)
    assert sync.urls == ["http://a/x", "http://b/y"]
    assert sync.periodic_attempts == 3 and ConfigSync(["http://a/x"], apply, attempts=2).periodic_attempts == 2
    for bad in ("", " , ", [], ["  "], "ftp://a/x"):
        with pytest.raises(ValueError):
            ConfigSync(bad, apply)
    with pytest.raises(ValueError):
        ConfigSync("http://a/x", apply, interval=0)


def test_sync_once_applies_only_when_the_config_changed(target):
    served = Served(cfg([("A", 2, None)], [("q", "sqs://q")]))
    target.on("/config", served)
    applied = []

    async def apply(config):
        applied.append(config)
        return {"pools_created": 1}

    async def go():
        sync = ConfigSync(target.url("/config"), apply, **FAST)
        results = [await sync.sync_once(), await sync.sync_once()]
        served.config = cfg([("A", 3, None)], [("q", "sqs://q")])
        results.append(await sync.sync_once())
        served.config["queues"][0]["visibilityTimeout"] = 600  # Rust ignores this; we do not
        results += [await sync.sync_once(), await sync.sync_once()]
        await sync.stop()
        return sync, results

    sync, results = run(go())
    assert results == [True, False, True, True, False]
    assert len(applied) == 3 and len(served.requests) == 5
    assert sync.current is applied[-1] and sync.current.queues[0].visibility_timeout == 600
    assert sync.failures == 0 and sync.last_error is None and sync.last_success > time.time() - 60


def test_conflicts_are_warned_once(target, target2):
    target.on("/config", Served(cfg([("A", 2, None)])))
    target2.on("/config", Served(cfg([("A", 8, None), ("B", 1, None)])))
    warnings = WarningService()

    async def go():
        async def apply(config):
            pass

        sync = ConfigSync([target.url("/config"), target2.url("/config")], apply, warnings=warnings, **FAST)
        await sync.sync_once()
        await sync.sync_once()
        await sync.stop()
        return sync

    sync = run(go())
    assert pool_codes(sync.current) == ["A", "B"] and sync.current.pool("A").concurrency == 2
    found = config_warnings(warnings, "Config conflict: pool 'A'")
    assert len(found) == 1 and found[0].severity == "WARN"
    assert target.url("/config") in found[0].message and target2.url("/config") in found[0].message
    assert sync.status()["conflicts"] == sync.conflicts and len(sync.conflicts) == 1


def test_periodic_sync_reconfigures_a_running_router(target):
    served = Served(cfg([("A", 2, None), ("B", 1, None)], [("main", "memory://main")]))
    target.on("/config", served)

    async def go():
        main, two = MemoryQueue("main", wait_seconds=0.2), MemoryQueue("two", wait_seconds=0.2)
        router, _ = router_with_queues({"main": main, "two": two}, [], housekeeping_interval=0.05)
        sync = ConfigSync(target.url("/config"), router.apply_config, interval=0.05, warnings=router.warnings, **FAST)
        await router.start()
        assert await sync.sync_once()  # the initial sync is the caller's
        pool_a = router.pools["A"]
        assert pool_a.concurrency == 2 and set(router.pools) == {"A", "B"} and set(router.consumers) == {"main"}
        sync.start()
        main.put(pointer(target.url("/ok"), "before", pool="A"))
        await wait_until(lambda: len(target.received("/ok")) == 1)

        served.config = cfg([("A", 5, 600), ("C", 3, None)], [("main", "memory://main"), ("two", "memory://two")])
        await wait_until(lambda: "C" in router.pools and "B" not in router.pools and "two" in router.consumers)
        assert router.pools["A"] is pool_a and pool_a.concurrency == 5 and pool_a.limiter.rpm == 600  # in place
        assert router.consumers["main"].task is not None  # the unchanged queue kept its loop
        main.put(pointer(target.url("/ok"), "after", pool="C"))
        two.put(pointer(target.url("/ok"), "via-two", pool="A"))
        await wait_until(lambda: len(target.received("/ok")) == 3)
        await wait_until(lambda: not router.draining_pools)  # B drained and went away
        requests = len(served.requests)
        await wait_until(lambda: len(served.requests) >= requests + 2)  # still syncing, nothing changes
        await sync.stop()
        await router.stop()
        return sync

    sync = run(go())
    assert sync.failures == 0 and pool_codes(sync.current) == ["A", "C"]


def test_periodic_failures_warn_and_keep_the_current_config(target, target2):
    first = Served(cfg([("A", 2, None)], [("main", "memory://main")]))
    second = Served(cfg([("B", 1, None)]))
    target.on("/config", first)
    target2.on("/config", second)

    async def go():
        main = MemoryQueue("main", wait_seconds=0.2)
        router, _ = router_with_queues({"main": main}, [])
        urls = [target.url("/config"), target2.url("/config")]
        sync = ConfigSync(urls, router.apply_config, interval=0.05, warnings=router.warnings, **FAST)
        await router.start()
        await sync.sync_once()
        pools = dict(router.pools)
        sync.start()

        second.fail = 10**6  # one source down: its last good config stands in
        await wait_until(lambda: config_warnings(router.warnings, "using its last good config"))
        assert router.pools == pools and not router.draining_pools and sync.failures == 0

        first.fail = 10**6  # every source down: the sync fails, the config stays
        await wait_until(lambda: config_warnings(router.warnings, "Config sync failed: "))
        assert router.pools == pools and not router.draining_pools and set(router.consumers) == {"main"}
        assert sync.failures >= 1 and "HTTP 500: platform unavailable" in sync.last_error
        failed = config_warnings(router.warnings, "Config sync failed: ")[0]
        assert failed.severity == "WARN" and urls[0] in failed.message and urls[1] in failed.message

        first.fail = second.fail = 0  # back, with a change
        first.config = cfg([("A", 7, None)], [("main", "memory://main")])
        await wait_until(lambda: router.pools["A"].concurrency == 7)
        await wait_until(lambda: sync.failures == 0)
        assert sync.last_error is None and set(router.pools) == {"A", "B"}
        await sync.stop()
        await router.stop()

    run(go())


def test_a_periodic_sync_uses_fewer_attempts(target):
    served = Served(cfg([]), fail=10**6)
    target.on("/config", served)
    warnings = WarningService()

    async def go():
        async def apply(config):
            pass

        sync = ConfigSync(target.url("/config"), apply, interval=0.3, attempts=12, warnings=warnings, retry_delay=0.02, timeout=2)
        sync.start()
        await wait_until(lambda: config_warnings(warnings, "Config sync failed"))
        count = len(served.requests)
        await sync.stop()
        return sync, count

    sync, count = run(go())
    assert count == 3  # min(attempts, 3) in one tick; the next tick is 0.3 s away
    assert sync.failures == 1 and sync.current is None


def test_a_failing_apply_is_retried_at_the_next_tick(target):
    target.on("/config", Served(cfg([("A", 1, None)])))
    warnings = WarningService()
    calls = []

    async def apply(config):
        calls.append(config)
        if len(calls) == 1:
            raise RuntimeError("boom")

    async def go():
        sync = ConfigSync(target.url("/config"), apply, interval=0.05, warnings=warnings, **FAST)
        sync.start()
        await wait_until(lambda: len(calls) == 2)
        await sync.stop()
        return sync

    sync = run(go())
    assert len(config_warnings(warnings, "Config sync failed: boom")) == 1
    assert sync.current is calls[1] and sync.failures == 0


def test_the_first_tick_is_skipped(target):
    served = Served(cfg([]))
    target.on("/config", served)

    async def go():
        async def apply(config):
            pass

        sync = ConfigSync(target.url("/config"), apply, interval=0.3, **FAST)
        sync.start()
        await asyncio.sleep(0.15)
        before = len(served.requests)
        await wait_until(lambda: len(served.requests) == 1)
        await sync.stop()
        return before

    assert run(go()) == 0


def test_stop_ends_the_task_promptly(target):
    served = Served(cfg([]), delay=5)
    target.on("/config", served)

    async def go():
        async def apply(config):
            pass

        idle = ConfigSync(target.url("/config"), apply, interval=30)
        task = idle.start()
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await idle.stop()
        idle_stop = time.monotonic() - started
        assert task.done() and not idle.status()["running"]

        busy = ConfigSync(target.url("/config"), apply, interval=0.01, timeout=10)
        busy.start()
        await wait_until(lambda: len(served.requests) == 1)  # a fetch is under way
        started = time.monotonic()
        await busy.stop()
        return idle_stop, time.monotonic() - started

    idle_stop, busy_stop = run(go())
    assert idle_stop < 0.5 and busy_stop < 0.5
