"""Active/standby (server/standby.py) against the machine's real Redis: the lease, its
renewal, a leader that loses Redis or its key stopping BEFORE its lease can expire, a standby
taking over, the key lost inside Redis; and the router app's `/monitoring/standby-status`.

Each test uses its own lock key and deletes it. In-process instances stand in for routers:
their `on_leader` / `on_follower` callbacks write a timeline of when each would poll, and
`assert_never_both` checks that no two polling intervals overlap. (The two-process failover is
in test_standby_failover.py.)"""

import asyncio
import time

import pytest

from flowcatalyst.core.warnings import WarningService
from flowcatalyst.server.app import RouterServerApp
from flowcatalyst.server.settings import RouterServerSettings
from flowcatalyst.server.standby import Standby
from tests.support.edgeapp import EdgeRunner, eventually
from tests.support.redis import LinkProxy, delete_keys, require_redis, sync_client, unique_key

TTL = 1.0
HEARTBEAT = 0.25


@pytest.fixture
def redis_url():
    return require_redis()


@pytest.fixture
def key(redis_url):
    key = unique_key()
    yield key
    delete_keys(key)


def run(coro, limit=30.0):
    return asyncio.run(asyncio.wait_for(coro, limit))


class Node:
    """A Standby whose callbacks record when this instance would poll."""

    def __init__(self, name, url, key, timeline, ttl=TTL, heartbeat=HEARTBEAT, on_follower_check=None):
        self.name = name
        self.timeline = timeline
        self.warnings = WarningService()
        self.on_follower_check = on_follower_check
        self.standby = Standby(url, key, ttl, heartbeat, name, self._lead, self._follow, self.warnings)

    async def _lead(self):
        self.timeline.append((time.monotonic(), self.name, "start"))

    async def _follow(self):
        if self.on_follower_check is not None:
            self.on_follower_check(self)
        self.timeline.append((time.monotonic(), self.name, "stop"))

    @property
    def polling(self):
        return self.standby.active

    async def start(self):
        await self.standby.start()
        return self

    async def kill(self):
        """As SIGKILL would: the loop ends, nothing is released, the process polls no more."""
        s = self.standby
        s._stopping = True
        s._task.cancel()
        await asyncio.gather(s._task, return_exceptions=True)
        await s._redis.aclose()
        if s.active:
            self.timeline.append((time.monotonic(), self.name, "stop"))
        return time.monotonic()


def intervals(timeline):
    """name -> [(start, end)] of polling; an interval still open ends now."""
    out = {}
    open_since = {}
    for at, name, event in sorted(timeline):
        if event == "start":
            assert name not in open_since, "%s started twice" % name
            open_since[name] = at
        else:
            assert name in open_since, "%s stopped without polling" % name
            out.setdefault(name, []).append((open_since.pop(name), at))
    now = time.monotonic()
    for name, since in open_since.items():
        out.setdefault(name, []).append((since, now))
    return out


def assert_never_both(timeline):
    spans = sorted((start, end, name) for name, items in intervals(timeline).items() for start, end in items)
    for (_, e1, n1), (s2, _, n2) in zip(spans, spans[1:], strict=False):
        assert s2 >= e1, "%s polled from %.3f while %s polled until %.3f" % (n2, s2, n1, e1)


async def until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting for %s" % what)


def first(timeline, name, event):
    return next(at for at, n, e in sorted(timeline) if n == name and e == event)


# -- the lease ------------------------------------------------------------------------------------


def test_one_of_two_leads_renews_and_reports_real_status(redis_url, key):
    async def main():
        timeline = []
        a = await Node("a", redis_url, key, timeline).start()
        await until(lambda: a.polling, what="a to lead")
        b = await Node("b", redis_url, key, timeline).start()
        await asyncio.sleep(TTL * 3)  # many renewals
        statuses = a.standby.status(), b.standby.status()
        value, pttl = sync_client().get(key), sync_client().pttl(key)
        await a.standby.stop()
        await b.standby.stop()
        return timeline, statuses, value, pttl, a, b

    timeline, (sa, sb), value, pttl, a, b = run(main())
    assert [(n, e) for _, n, e in timeline] == [("a", "start"), ("a", "stop")]  # b never polled; a kept the lock
    assert a.standby.transitions == 1
    assert (value, 0 < pttl <= TTL * 1000) == ("a", True)
    assert sa["standbyEnabled"] and (sa["instanceId"], sa["role"], sa["redisAvailable"], sa["currentLockHolder"], sa["hasWarning"]) == ("a", "PRIMARY", True, "a", False)
    assert (sb["instanceId"], sb["role"], sb["redisAvailable"], sb["currentLockHolder"], sb["hasWarning"]) == ("b", "STANDBY", True, "a", False)
    for s in (sa, sb):
        assert s["lastSuccessfulRefresh"].endswith("Z") and len(s["lastSuccessfulRefresh"]) == 24
    assert not a.warnings.list() and not b.warnings.list()


def test_a_leader_that_stops_hands_over_at_once(redis_url, key):
    """stop() pauses polling first, then deletes the key and leaves a release marker: the
    standby takes over at its next attempt, without waiting for the lease to expire."""
    ttl = 6.0

    async def main():
        timeline = []
        a = await Node("a", redis_url, key, timeline, ttl=ttl).start()
        await until(lambda: a.polling, what="a to lead")
        b = await Node("b", redis_url, key, timeline, ttl=ttl).start()
        await asyncio.sleep(HEARTBEAT * 2)  # b has seen a's lease
        await a.standby.stop()
        stopped = time.monotonic()
        await until(lambda: b.polling, timeout=ttl, what="b to take over")
        took = time.monotonic() - stopped
        await b.standby.stop()
        return timeline, took

    timeline, took = run(main())
    assert [(n, e) for _, n, e in sorted(timeline)] == [("a", "start"), ("a", "stop"), ("b", "start"), ("b", "stop")]
    assert_never_both(timeline)
    assert took < ttl / 2  # not the lease's expiry: the release


def test_a_dead_leader_is_replaced_within_one_ttl(redis_url, key):
    async def main():
        timeline = []
        a = await Node("a", redis_url, key, timeline).start()
        await until(lambda: a.polling, what="a to lead")
        b = await Node("b", redis_url, key, timeline).start()
        await asyncio.sleep(HEARTBEAT * 3)
        died = await a.kill()
        await until(lambda: b.polling, timeout=TTL * 3, what="b to take over")
        await b.standby.stop()
        return timeline, died

    timeline, died = run(main())
    assert_never_both(timeline)
    took = first(timeline, "b", "start") - died
    assert 0 < took <= TTL + 0.5, took  # the lease a renewed before dying, plus b's next attempt


# -- losing Redis or the key ----------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["refuse", "hang"])
def test_a_leader_that_cannot_renew_stops_polling_before_its_lease_expires(redis_url, key, failure):
    """The leader talks to Redis through a proxy that then refuses connections, or keeps
    them open without answering. When it stops polling, its lease must still be alive in
    Redis (checked there directly, at that moment); the standby takes over only after."""
    seen_at_stop = []

    def check(node):
        client = sync_client()
        seen_at_stop.append((client.get(key), client.pttl(key)))
        client.close()

    async def main():
        timeline = []
        proxy = await LinkProxy(redis_url).start()
        a = await Node("a", proxy.url, key, timeline, on_follower_check=check).start()
        await until(lambda: a.polling, what="a to lead")
        b = await Node("b", redis_url, key, timeline).start()
        await asyncio.sleep(HEARTBEAT * 2)
        cut = time.monotonic()
        getattr(proxy, failure)()
        await until(lambda: b.polling, timeout=TTL * 4, what="b to take over")
        status = a.standby.status()
        await a.standby.stop()
        await b.standby.stop()
        await proxy.close()
        return timeline, cut, status, a

    timeline, cut, status, a = run(main())
    assert_never_both(timeline)
    (value, pttl) = seen_at_stop[0]
    assert value == "a" and pttl > 0, (value, pttl)  # a stopped while its lease still ran
    assert first(timeline, "a", "stop") - cut < TTL
    assert first(timeline, "b", "start") >= first(timeline, "a", "stop")
    assert (status["role"], status["redisAvailable"], status["hasWarning"], status["currentLockHolder"]) == ("STANDBY", False, True, "a")
    messages = [w.message for w in a.warnings.list()]
    assert len([m for m in messages if m.startswith("Standby lock: Redis unreachable")]) == 1  # once per outage, not per heartbeat
    assert len([m for m in messages if m.startswith("Instance a stopped polling")]) == 1


def test_a_leader_whose_key_was_taken_steps_down(redis_url, key):
    async def main():
        timeline = []
        a = await Node("a", redis_url, key, timeline).start()
        await until(lambda: a.polling, what="a to lead")
        sync_client().set(key, "intruder", px=int(TTL * 3000))
        taken = time.monotonic()
        await until(lambda: not a.polling, timeout=TTL, what="a to step down")
        stepped = time.monotonic() - taken
        status = a.standby.status()
        await a.standby.stop()
        return stepped, status

    stepped, status = run(main())
    assert stepped <= HEARTBEAT + 0.3  # at its next renewal
    assert (status["role"], status["currentLockHolder"]) == ("STANDBY", "intruder")
    assert sync_client().get(key) == "intruder"  # stop() released nothing that was not its own


def test_a_key_lost_inside_redis_never_lets_two_poll(redis_url, key):
    """The key vanishes (as in a Redis restart without persistence) right after the leader
    renewed. The standby takes it at its next attempt, but waits until the lease it last saw
    would have run out before polling; the old leader steps down at its next renewal."""
    slow, fast = TTL * 0.45, 0.05

    async def main():
        timeline = []
        a = await Node("a", redis_url, key, timeline, heartbeat=slow).start()
        await until(lambda: a.polling, what="a to lead")
        b = await Node("b", redis_url, key, timeline, heartbeat=fast).start()
        await asyncio.sleep(fast * 4)  # b has seen a's lease
        renewed = a.standby._lease_from
        await until(lambda: a.standby._lease_from != renewed, what="a's next renewal")
        sync_client().delete(key)
        lost = time.monotonic()
        await until(lambda: b.standby.held, timeout=1.0, what="b to take the key")
        held_while_a_polled = a.polling
        await until(lambda: b.polling, timeout=TTL * 3, what="b to poll")
        await a.standby.stop()
        await b.standby.stop()
        return timeline, lost, held_while_a_polled

    timeline, lost, held_while_a_polled = run(main())
    assert held_while_a_polled  # b held the key while a still polled: only the hold-off kept them apart
    assert_never_both(timeline)
    assert first(timeline, "a", "stop") - lost <= slow + 0.3
    assert first(timeline, "b", "start") - lost <= TTL + 0.5


def test_a_holder_stopped_during_its_hold_off_leaves_no_release_marker(redis_url, key):
    """The marker tells the next standby it may poll at once; a holder that never polled
    (still waiting for the previous leader's lease) must not say so."""

    async def main():
        timeline = []
        a = await Node("a", redis_url, key, timeline, ttl=4.0, heartbeat=1.5).start()
        await until(lambda: a.polling, what="a to lead")
        b = await Node("b", redis_url, key, timeline, ttl=4.0, heartbeat=0.05).start()
        await asyncio.sleep(0.3)
        sync_client().delete(key)
        await until(lambda: b.standby.held, what="b to take the key")
        assert not b.polling
        await b.standby.stop()
        await a.standby.stop()
        return timeline

    timeline = run(main())
    assert [(n, e) for _, n, e in timeline] == [("a", "start"), ("a", "stop")]
    assert sync_client().get(key + ":released") != "b"


def test_redis_down_is_a_warning_and_the_instance_waits_as_standby(redis_url, key):
    async def main():
        timeline = []
        proxy = await LinkProxy(redis_url).start()
        proxy.refuse()
        a = await Node("a", proxy.url, key, timeline).start()
        await asyncio.sleep(HEARTBEAT * 4)
        down = a.standby.status()
        warnings = [w.message for w in a.warnings.list()]
        proxy.restore()
        await until(lambda: a.polling, timeout=HEARTBEAT * 8, what="a to lead once Redis is back")
        up = a.standby.status()
        await a.standby.stop()
        await proxy.close()
        return down, warnings, up

    down, warnings, up = run(main())
    assert (down["role"], down["redisAvailable"], down["hasWarning"], down["currentLockHolder"], down["lastSuccessfulRefresh"]) == ("STANDBY", False, True, None, None)
    assert len(warnings) == 1 and "Redis unreachable" in warnings[0]
    assert (up["role"], up["redisAvailable"], up["hasWarning"], up["currentLockHolder"]) == ("PRIMARY", True, False, "a")


def test_an_instance_restarted_under_the_same_id_takes_its_lock_back(redis_url, key):
    sync_client().set(key, "same", px=int(TTL * 5000))

    async def main():
        timeline = []
        a = await Node("same", redis_url, key, timeline).start()
        await until(lambda: a.polling, timeout=TTL, what="the lock to be taken back")
        await a.standby.stop()
        return sync_client().get(key), sync_client().get(key + ":released")

    assert run(main()) == (None, "same")  # and released with a marker at stop


def test_settings_are_checked():
    with pytest.raises(ValueError, match="at most half"):
        Standby("redis://127.0.0.1:6379", "k", ttl=3, heartbeat=2, instance_id="a")
    with pytest.raises(ValueError, match="instance id"):
        Standby("redis://127.0.0.1:6379", "k", ttl=3, heartbeat=1, instance_id="")


def test_standby_settings_and_flowcatalyst_aliases():
    s = RouterServerSettings.parse(
        [],
        {
            "FLOWCATALYST_STANDBY_ENABLED": "1",  # RS read 1 as false (spec §14 #17)
            "FLOWCATALYST_REDIS_URL": "redis://10.0.0.1:6379",
            "FLOWCATALYST_STANDBY_LOCK_KEY": "k",
            "FLOWCATALYST_STANDBY_LOCK_TTL": "12",
            "FLOWCATALYST_STANDBY_HEARTBEAT_INTERVAL": "4",
            "FLOWCATALYST_INSTANCE_ID": "router-1",
        },
    ).validate()
    assert (s.standby_enabled, s.standby_redis_url, s.standby_lock_key, s.standby_lock_ttl, s.standby_heartbeat, s.instance_id) == (True, "redis://10.0.0.1:6379", "k", 12.0, 4.0, "router-1")
    s = RouterServerSettings.parse([], {"FC_STANDBY_ENABLED": "false", "STANDBY_ENABLED": "true", "FC_STANDBY_REDIS_URL": "redis://a", "FLOWCATALYST_STANDBY_REDIS_URL": "redis://b"})
    assert (s.standby_enabled, s.standby_redis_url) == (False, "redis://a")  # the FC_ names win
    from flowcatalyst.edge.settings import SettingsError

    with pytest.raises(SettingsError, match="FLOWCATALYST_STANDBY_LOCK_TTL='x'"):
        RouterServerSettings.parse([], {"FLOWCATALYST_STANDBY_LOCK_TTL": "x"})
    with pytest.raises(SettingsError, match="at most half"):
        RouterServerSettings.parse([], {"FC_STANDBY_LOCK_TTL": "3", "FC_STANDBY_HEARTBEAT_INTERVAL": "2"}).validate()


# -- the router app -------------------------------------------------------------------------------


def app_runner(tmp_path, **settings):
    config = {"processingPools": [{"code": "P", "concurrency": 2}], "queues": [{"queueName": "q", "queueUri": "sqlite://%s?queue=q" % (tmp_path / "q.db"), "waitSeconds": 0.1}]}
    return EdgeRunner(tmp_path, config=config, app_class=RouterServerApp, settings_class=RouterServerSettings, **settings)


def polls(client):
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('fc_consumer_polls_total{consumer="q"}'):
            return float(line.split()[-1])
    return 0.0


def gauge(client, name):
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_the_router_polls_only_while_it_holds_the_lock(tmp_path, redis_url, key):
    settings = dict(standby_enabled=True, standby_redis_url=redis_url, standby_lock_key=key, standby_lock_ttl=TTL, standby_heartbeat=HEARTBEAT, instance_id="router-a")
    with app_runner(tmp_path, **settings) as r, r.client() as c:
        status = eventually(lambda: (lambda s: s if s["role"] == "PRIMARY" else None)(c.get("/monitoring/standby-status").json()), what="PRIMARY")
        assert (status["standbyEnabled"], status["instanceId"], status["currentLockHolder"], status["redisAvailable"], status["hasWarning"]) == (True, "router-a", "router-a", True, False)
        eventually(lambda: polls(c) > 2, what="polls")
        assert gauge(c, "fc_standby_leader") == 1
        sync_client().set(key, "router-b", px=int(TTL * 4000))  # another instance has the lock now
        eventually(lambda: c.get("/monitoring/standby-status").json()["role"] == "STANDBY", what="STANDBY")
        assert r.run(lambda: r.router.polling) is False and gauge(c, "fc_standby_leader") == 0
        assert c.get("/monitoring/standby-status").json()["currentLockHolder"] == "router-b"
        before = polls(c)
        time.sleep(0.5)
        assert polls(c) == before  # on standby nothing polls ...
        assert c.get("/health").json()["status"] == "UP" and c.get("/health/ready").status_code == 200  # ... and health is served
        sync_client().delete(key)
        eventually(lambda: c.get("/monitoring/standby-status").json()["role"] == "PRIMARY", timeout=TTL * 8, what="PRIMARY again")
        eventually(lambda: polls(c) > before, what="polling again")
    assert sync_client().get(key + ":released") == "router-a"  # the stop released the lock


def test_standby_status_without_standby(tmp_path):
    with app_runner(tmp_path, instance_id="solo") as r, r.client() as c:
        assert c.get("/monitoring/standby-status").json() == {
            "standbyEnabled": False,
            "instanceId": "solo",
            "role": "PRIMARY",
            "redisAvailable": False,
            "currentLockHolder": None,
            "lastSuccessfulRefresh": None,
            "hasWarning": False,
        }
        assert c.get("/monitoring/consumer-health").json()["consumers"]["q"]["instanceId"] == "solo"
    with EdgeRunner(tmp_path) as edge, edge.client() as c:  # the edge answers the same way
        body = c.get("/monitoring/standby-status").json()
        assert (body["standbyEnabled"], body["role"], body["redisAvailable"]) == (False, "PRIMARY", False) and body["instanceId"]
