"""NATS JetStream queue (server/natsqueue.py, server/natsconfig.py) against the machine's real
NATS server at FC_TEST_NATS_URL (default nats://127.0.0.1:4222), and end to end through the
core Router to a real HTTP target on loopback.

Without a reachable NATS with JetStream the server tests skip, except under
FC_TEST_REQUIRE_SERVICES=1 (CI), where they fail. Each test uses its own stream, consumer and
subject prefix and deletes the stream afterwards. Reconnects are provoked two real ways: a
loopback TCP proxy in front of the shared server whose connections the test cuts, and a
private nats-server (on a free port, its own store) that the test stops and starts again.
"""

import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from urllib.parse import urlencode, urlsplit

import pytest

from flowcatalyst.core import (
    ConsumerStopped,
    MessageError,
    PoolConfig,
    QueueConfig,
    ReceiptHandleError,
    Router,
    RouterConfig,
)
from flowcatalyst.core import log as corelog
from flowcatalyst.server.natsconfig import (
    NatsSettings,
    consumer_problems,
    stream_problems,
    subject_within,
)
from flowcatalyst.server.natsqueue import NatsPollError, NatsQueue, NatsSetupError, Unparsed
from tests.support.engine import FailFirst, fast_mediator, pointer, wait_until
from tests.support.ports import free_port
from tests.support.services import service_missing

NATS_URL = os.environ.get("FC_TEST_NATS_URL") or "nats://127.0.0.1:4222"


# -- the URI and the pure checks (no server) ---------------------------------------------------------


def test_uri_defaults_are_those_of_the_spec():
    s = NatsSettings.from_uri("nats://127.0.0.1:4222")
    assert s.servers == ["nats://127.0.0.1:4222"]
    assert (s.stream, s.consumer, s.subject) == ("FLOWCATALYST", "fc-router", "flowcatalyst.>")
    assert (s.max_messages, s.poll_timeout, s.ack_wait, s.max_deliver, s.max_ack_pending) == (10, 20.0, 120.0, 10, 1000)
    assert (s.storage, s.replicas, s.max_age, s.duplicate_window) == ("file", 1, 7 * 86400.0, 120.0)
    assert (s.connect_timeout, s.reconnect_wait, s.max_reconnects, s.create) == (10.0, 2.0, -1, True)
    assert NatsSettings().servers == ["nats://localhost:4222"]
    assert NatsSettings.from_uri("nats://").servers == ["nats://localhost:4222"]
    assert s.stream_config()["retention"] == "workqueue"
    c = s.consumer_config()
    assert (c["durable_name"], c["ack_policy"], c["filter_subject"]) == ("fc-router", "explicit", "flowcatalyst.>")


def test_uri_takes_every_parameter():
    s = NatsSettings.from_uri(
        "nats://u%40x:p@h1:4000,[::1]:4001,h3?stream=S&consumer=c-1&subject=a.b.>&publish-subject=a.b.c"
        "&max-messages=5&poll-timeout-ms=1500&ack-wait-secs=30&max-deliver=-1&max-ack-pending=1"
        "&storage=MEMORY&replicas=3&max-age-secs=0&duplicate-window-secs=60&connect-timeout-secs=2"
        "&reconnect-wait-secs=0.5&max-reconnects=7&request-timeout-secs=3&create=false&name=router-1"
    )
    assert s.servers == ["nats://u%40x:p@h1:4000", "nats://u%40x:p@[::1]:4001", "nats://u%40x:p@h3:4222"]
    assert (s.stream, s.consumer, s.subject, s.publish_subject) == ("S", "c-1", "a.b.>", "a.b.c")
    assert (s.max_messages, s.poll_timeout, s.ack_wait, s.max_deliver, s.max_ack_pending) == (5, 1.5, 30.0, -1, 1)
    assert (s.storage, s.replicas, s.max_age, s.duplicate_window) == ("memory", 3, 0.0, 60.0)
    assert (s.connect_timeout, s.reconnect_wait, s.max_reconnects, s.request_timeout) == (2.0, 0.5, 7, 3.0)
    assert (s.create, s.name) == (False, "router-1")
    assert NatsSettings.from_uri("tls://h:4443").servers == ["tls://h:4443"]


@pytest.mark.parametrize(
    "query, named",
    [
        ("max-messages=0", "max-messages"),
        ("max-messages=ten", "max-messages"),
        ("poll-timeout-ms=1.5", "poll-timeout-ms"),
        ("ack-wait-secs=-1", "ack-wait-secs"),
        ("ack-wait-secs=nan", "ack-wait-secs"),
        ("max-deliver=0", "max-deliver"),
        ("max-ack-pending=0", "max-ack-pending"),
        ("storage=disk", "storage"),
        ("replicas=9", "replicas"),
        ("create=maybe", "create"),
        ("stream=a.b", "stream"),
        ("consumer=c d", "consumer"),
        ("subject=a.>.b", "subject"),
        ("subject=a..b", "subject"),
        ("publish-subject=x.y", "publish-subject"),
        ("publish-subject=flowcatalyst.*", "publish-subject"),
        ("max-age-secs=10&duplicate-window-secs=60", "duplicate-window-secs"),
        ("stream=A&stream=B", "stream"),
        ("stream=", "stream"),
        ("streams=A", "streams"),
    ],
)
def test_uri_rejects_a_bad_parameter_by_name(query, named):
    with pytest.raises(ValueError) as e:
        NatsSettings.from_uri("nats://127.0.0.1:4222?" + query)
    assert named in str(e.value)


@pytest.mark.parametrize("uri", ["sqs://x", "nats://h:99999", "nats://h:port", "nats://h:4222/stream", "nats://:4222"])
def test_uri_rejects_a_bad_address(uri):
    with pytest.raises(ValueError):
        NatsSettings.from_uri(uri)


def test_publish_subject_per_message():
    from flowcatalyst.core import Message

    s = NatsSettings.from_uri("nats://h?subject=flowcatalyst.>")
    assert s.publish_subject_for(Message("1", "http://t/", pool_code="DISPATCH-POOL")) == "flowcatalyst.DISPATCH-POOL"
    assert s.publish_subject_for(Message("1", "http://t/", pool_code="")) == "flowcatalyst.default"
    assert s.publish_subject_for(Message("1", "http://t/", pool_code="a.b *>c")) == "flowcatalyst.a_b___c"
    assert NatsSettings.from_uri("nats://h?subject=jobs").publish_subject_for(Message("1", "http://t/")) == "jobs"
    fixed = NatsSettings.from_uri("nats://h?subject=a.*.c&publish-subject=a.b.c")
    assert fixed.publish_subject_for(Message("1", "http://t/", pool_code="P")) == "a.b.c"
    with pytest.raises(ValueError, match="publish-subject"):
        NatsSettings.from_uri("nats://h?subject=a.*.c").publish_subject_for(Message("1", "http://t/"))


def test_subject_containment_and_setup_checks():
    assert subject_within("flowcatalyst.>", "flowcatalyst.>")
    assert subject_within("flowcatalyst.>", "flowcatalyst.dispatch.>")
    assert subject_within(">", "a.b")
    assert subject_within("a.*", "a.b") and subject_within("a.*", "a.*")
    assert not subject_within("a.b", "a.*")
    assert not subject_within("flowcatalyst.dispatch.>", "flowcatalyst.>")
    assert not subject_within("flowcatalyst.>", "flowcatalyst")
    s = NatsSettings(stream="S", consumer="c", subject="fc.>")
    errors, diffs = stream_problems(s, {"subjects": ["other.>"], "retention": "limits", "storage": "file", "num_replicas": 1, "max_age": 604800.0, "duplicate_window": 120.0})
    assert "do not cover" in errors[0] and diffs == [("retention", "limits", "workqueue")]
    errors, diffs = consumer_problems(s, {"deliver_subject": "x", "ack_policy": "all", "filter_subject": "fc.a", "ack_wait": 30.0, "max_deliver": 10, "max_ack_pending": 1000})
    assert len(errors) == 3 and diffs == [("ack_wait", 30.0, 120.0)]


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def test_a_first_connect_that_fails_says_where_and_why():
    async def body():
        q = NatsQueue("nats://user:secret@127.0.0.1:%d?connect-timeout-secs=0.5&reconnect-wait-secs=0.1" % _closed_port())
        with pytest.raises(ConnectionError) as e:
            await q.poll(10, wait=1)
        assert "cannot connect to NATS at nats://127.0.0.1:" in str(e.value) and "secret" not in str(e.value)
        assert not q.is_healthy()
        await q.close()

    asyncio.run(body())


def test_stop_ends_a_poll_that_is_still_connecting():
    async def body():
        q = NatsQueue("nats://127.0.0.1:%d?connect-timeout-secs=30&reconnect-wait-secs=0.1" % _closed_port())
        polling = asyncio.ensure_future(q.poll(10))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await q.stop()
        with pytest.raises(ConsumerStopped):
            await polling
        assert time.monotonic() - started < 5  # not the 30 s connect timeout
        await q.close()

    asyncio.run(body())


# -- the server ------------------------------------------------------------------------------------


def _probe(url):
    """Is there a NATS server with JetStream at `url`? Reads the server's INFO line."""
    parts = urlsplit(url.split(",")[0])
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=2) as sock:
            sock.settimeout(2)
            line = sock.makefile("rb").readline()
    except OSError as e:
        return "not reachable (%s)" % e
    if not line.startswith(b"INFO "):
        return "not a NATS server (%r)" % line[:40]
    if not json.loads(line[5:]).get("jetstream"):
        return "JetStream is not enabled (start nats-server with -js)"
    return None


@pytest.fixture(scope="module")
def nats_url():
    problem = _probe(NATS_URL)
    if problem:
        service_missing("NATS at %s: %s (set FC_TEST_NATS_URL)" % (NATS_URL, problem))
    return NATS_URL


class Env:
    """A test's own stream, consumer and subject prefix, its queues, and their clean-up."""

    def __init__(self, url):
        u = uuid.uuid4().hex[:12]
        self.url = url
        self.stream = "FCT_" + u
        self.consumer = "fct-" + u
        self.prefix = "fct" + u
        self.subject = self.prefix + ".>"
        self.queues = []
        self.nc = None
        self.js = None

    def uri(self, url=None, **params):
        query = {"stream": self.stream, "consumer": self.consumer, "subject": self.subject}
        for key, value in params.items():
            query[key.replace("_", "-")] = value
        return "%s?%s" % (url or self.url, urlencode(query))

    def queue(self, url=None, cls=NatsQueue, **params):
        q = cls(self.uri(url, **params))
        self.queues.append(q)
        return q

    async def admin(self):
        """A plain nats-py JetStream context on the shared server, for looking and poking."""
        if self.js is None:
            import nats

            self.nc = await nats.connect(self.url)
            self.js = self.nc.jetstream()
        return self.js

    async def stream_messages(self):
        return (await (await self.admin()).stream_info(self.stream)).state.messages

    async def _cleanup(self):
        for q in self.queues:
            try:
                await q.close()
            except Exception:
                pass
        try:
            js = await self.admin()
            await js.delete_stream(self.stream)
        except Exception:
            pass
        if self.nc is not None:
            await self.nc.close()

    def run(self, body):
        async def main():
            try:
                await asyncio.wait_for(body(), 60)
            finally:
                await self._cleanup()

        asyncio.run(main())


@pytest.fixture
def env(nats_url):
    return Env(nats_url)


@pytest.fixture
def logs():
    out = io.StringIO()
    corelog.configure(level="DEBUG", stream=out)
    yield out
    corelog.configure()


def msg(id, target="http://127.0.0.1:9/x", **extra):
    return pointer(target, id, **extra)


async def poll_until(q, count, timeout=5.0):
    """Poll until `count` messages came. One long pull request rather than many short ones:
    nats-server 2.9 was seen to under-count a redelivery (num_delivered) that met the expiry
    of a pull request."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += await q.poll(10, wait=max(0.05, deadline - time.monotonic()))
    return got


def test_creates_the_stream_and_durable_pull_consumer_of_the_spec(env):
    async def body():
        q = env.queue()
        assert q.identifier == "%s/%s" % (env.stream, env.consumer)
        assert not q.is_healthy()
        await q.start()
        assert q.is_healthy() and q.setup_warnings == []
        js = await env.admin()
        sc = (await js.stream_info(env.stream)).config
        assert (sc.retention, sc.storage, sc.subjects) == ("workqueue", "file", [env.subject])
        assert (sc.max_age, sc.duplicate_window, sc.num_replicas) == (7 * 86400, 120, 1)
        cc = (await js.consumer_info(env.stream, env.consumer)).config
        assert (cc.durable_name, cc.ack_policy, cc.filter_subject, cc.deliver_subject) == (env.consumer, "explicit", env.subject, None)
        assert (cc.ack_wait, cc.max_deliver, cc.max_ack_pending) == (120, 10, 1000)
        again = env.queue()  # a second router: finds them as they are
        await again.start()
        assert again.setup_warnings == []

    env.run(body)


def test_an_existing_stream_or_consumer_with_other_settings_is_reported(env, logs):
    from nats.js import api

    async def body():
        js = await env.admin()
        await js.add_stream(name=env.stream, subjects=[env.subject], retention=api.RetentionPolicy.LIMITS, storage=api.StorageType.MEMORY)
        await js.add_consumer(env.stream, durable_name=env.consumer, ack_policy=api.AckPolicy.EXPLICIT, filter_subject=env.subject, ack_wait=30, max_deliver=3)
        q = env.queue()
        await q.start()
        text = " ".join(q.setup_warnings)
        assert "retention=limits (configured workqueue)" in text and "storage=memory (configured file)" in text
        assert "ack_wait=30.0 (configured 120.0)" in text and "max_deliver=3 (configured 10)" in text
        assert q.effective["max_deliver"] == 3 and q.effective["ack_wait"] == 30
        assert "exists with different settings" in logs.getvalue()

        await js.add_consumer(env.stream, durable_name="other", ack_policy=api.AckPolicy.EXPLICIT, filter_subject=env.prefix + ".x")
        with pytest.raises(NatsSetupError, match="filters"):
            await env.queue(consumer="other").start()
        with pytest.raises(NatsSetupError, match="do not cover"):
            await env.queue(subject="elsewhere.>", consumer="c2").start()
        with pytest.raises(NatsSetupError, match="does not exist"):
            await env.queue(stream=env.stream + "_missing", create="false").start()

    env.run(body)


def test_receive_ack_and_the_envelope(env):
    async def body():
        q = env.queue()
        results = await q.publish_batch([(msg("m-%d" % i), None) for i in range(3)])
        assert [r.status for r in results] == ["ACCEPTED"] * 3
        got = await poll_until(q, 3)
        assert [m.message.id for m in got] == ["m-0", "m-1", "m-2"]  # stream order
        for i, m in enumerate(got):
            assert m.receipt_handle == m.broker_message_id == "%s:%d" % (env.stream, i + 1)
            assert m.queue_identifier == "%s/%s" % (env.stream, env.consumer)
            assert m.receive_count == 1
        assert (await q.metrics())["in_flight"] == 3
        for m in got:
            await q.ack(m.receipt_handle)
        for call in (q.ack(got[0].receipt_handle), q.nack(got[0].receipt_handle, 1), q.defer(got[0].receipt_handle, 1), q.extend_visibility(got[0].receipt_handle, 5), q.ack("nope")):
            with pytest.raises(ReceiptHandleError):
                await call
        m = await q.metrics()
        assert (m["pending"], m["in_flight"], m["counters"]["acked"]) == (0, 0, 3)
        assert await q.size() == 0 and await env.stream_messages() == 0  # WorkQueue: acked is gone
        assert await q.poll(10, wait=0.2) == []

    env.run(body)


def test_a_poll_returns_on_the_first_delivery_not_a_full_batch(env):
    async def body():
        q = env.queue()
        await q.start()
        started = time.monotonic()
        waiting = asyncio.ensure_future(q.poll(10, wait=15))
        await asyncio.sleep(0.3)
        await q.publish(msg("late"))
        got = await waiting
        assert [m.message.id for m in got] == ["late"]
        assert time.monotonic() - started < 10  # long before the 15 s expiry

    env.run(body)


def test_nack_with_delay_is_not_redelivered_before_the_delay(env):
    async def body():
        q = env.queue()
        await q.publish(msg("n"))
        (first,) = await poll_until(q, 1)
        nacked_at = time.monotonic()
        await q.nack(first.receipt_handle, 2, "target said no")
        assert await q.poll(10, wait=1.0) == []
        (again,) = await poll_until(q, 1, timeout=5)
        assert time.monotonic() - nacked_at >= 1.9
        assert again.receipt_handle == first.receipt_handle and again.receive_count == 2
        await q.nack(again.receipt_handle, None, "plain nak")  # no delay: back at once
        (third,) = await poll_until(q, 1, timeout=2)
        assert third.receive_count == 3
        await q.defer(third.receipt_handle, 1)
        (fourth,) = await poll_until(q, 1, timeout=4)
        await q.ack(fourth.receipt_handle)
        c = q.counters
        assert (c["nacked"], c["deferred"], c["redelivered"], c["acked"]) == (2, 1, 3, 1)

    env.run(body)


def test_extend_visibility_keeps_a_slow_message_from_redelivery(env):
    async def body():
        q = env.queue(ack_wait_secs=1.5)
        await q.publish_batch([(msg("slow"), None), (msg("plain"), None)])
        got = await poll_until(q, 2)
        slow = next(m for m in got if m.message.id == "slow")
        plain = next(m for m in got if m.message.id == "plain")
        redelivered = []
        until = time.monotonic() + 3.5  # over twice the ack_wait
        while time.monotonic() < until:
            await q.extend_visibility(slow.receipt_handle, 1.5)
            redelivered += await q.poll(10, wait=0.3)
        # the message not extended came back after its ack_wait; the extended one never did
        assert any(m.message.id == "plain" for m in redelivered)
        assert not any(m.message.id == "slow" for m in redelivered)
        await q.ack(slow.receipt_handle)
        await q.ack(plain.receipt_handle)
        assert q.counters["extended"] >= 5 and await q.size() == 0

    env.run(body)


def test_poison_is_terminated_dead_lettered_and_never_redelivered(env, logs):
    async def body():
        q = env.queue(ack_wait_secs=1)
        seen = []
        q.on_dead_letter = seen.append
        await q.start()
        js = await env.admin()
        await js.publish(env.prefix + ".x", b"not json at all <<<", headers={"Nats-Msg-Id": "bad-1"})
        await js.publish(env.prefix + ".x", json.dumps({"id": "bad-2", "mediationType": "HTTP"}).encode())
        await q.publish(msg("good"))
        got = await poll_until(q, 1)
        assert [m.message.id for m in got] == ["good"]
        await q.ack(got[0].receipt_handle)
        assert await q.poll(10, wait=1.5) == []  # past ack_wait: termed, not redelivered
        assert await env.stream_messages() == 0
        letters = await q.list_dead_letters()
        assert [d.message.id for d in letters] == ["bad-1", "%s:2" % env.stream] and seen == letters
        assert "not valid JSON" in letters[0].reason and "mediationTarget" in letters[1].reason
        assert letters[0].to_dict()["message"] == {"id": "bad-1", "raw": "not json at all <<<"}
        assert isinstance(letters[1].message, Unparsed) and letters[1].to_dict()["message"]["raw"]["id"] == "bad-2"
        assert "poison message terminated" in logs.getvalue() and "not json at all" in logs.getvalue()
        m = await q.metrics()
        assert (m["poison"], m["dead_lettered"], m["pending"], m["in_flight"]) == (2, 2, 0, 0)
        assert await q.replay_dead_letters() == 0  # a poison payload stays a dead letter
        assert await q.delete_dead_letters(["bad-1"]) == 1 and len(await q.list_dead_letters()) == 1

    env.run(body)


def test_the_last_allowed_failure_is_dead_lettered_with_its_reason_and_replayable(env):
    async def body():
        q = env.queue(max_deliver=2)
        await q.publish(msg("doomed"))
        (m1,) = await poll_until(q, 1)
        await q.nack(m1.receipt_handle, None, "HTTP 500 the first time")
        (m2,) = await poll_until(q, 1)
        assert m2.receive_count == 2
        await q.nack(m2.receipt_handle, 5, "HTTP 503 the second time")
        (letter,) = await q.list_dead_letters()
        assert letter.message.id == "doomed" and letter.receive_count == 2
        assert "failed 2 times" in letter.reason and "HTTP 503 the second time" in letter.reason
        assert await env.stream_messages() == 0  # terminated: nothing left to strand
        assert await q.replay_dead_letters(["doomed"]) == 1 and await q.list_dead_letters() == []
        (back,) = await poll_until(q, 1)
        assert back.message.id == "doomed" and back.receive_count == 1
        await q.ack(back.receipt_handle)

    env.run(body)


def test_a_defer_on_the_last_allowed_delivery_publishes_the_message_again(env):
    async def body():
        q = env.queue(max_deliver=2)
        await q.publish(msg("busy"))
        (m1,) = await poll_until(q, 1)
        await q.defer(m1.receipt_handle, None)
        (m2,) = await poll_until(q, 1)
        await q.defer(m2.receipt_handle, None)  # the server would not deliver it a third time
        (m3,) = await poll_until(q, 1)
        assert m3.message.id == "busy" and m3.receive_count == 1
        assert m3.receipt_handle != m1.receipt_handle and q.counters["requeued"] == 1
        await q.ack(m3.receipt_handle)
        assert await q.list_dead_letters() == [] and await env.stream_messages() == 0

    env.run(body)


def test_publish_subjects_and_deduplication(env):
    async def body():
        q = env.queue()
        assert (await q.publish(msg("d1", pool="DISPATCH-POOL"))).status == "ACCEPTED"
        assert (await q.publish(msg("d1", pool="DISPATCH-POOL"))).status == "DUPLICATE"  # Nats-Msg-Id = id
        assert (await q.publish(msg("d1", pool=""), dedup_id="again")).status == "ACCEPTED"
        assert (await q.publish(msg("d2"), dedup_id="again")).status == "DUPLICATE"
        with pytest.raises(MessageError):
            await q.publish({"id": "x", "mediationType": "HTTP"})
        js = await env.admin()
        assert (await js.get_msg(env.stream, 1)).subject == env.prefix + ".DISPATCH-POOL"
        assert (await js.get_msg(env.stream, 2)).subject == env.prefix + ".default"
        assert await env.stream_messages() == 2
        assert (q.counters["published"], q.counters["duplicates"]) == (2, 2)

    env.run(body)


def test_stop_ends_a_waiting_poll_and_answers_still_land(env):
    async def body():
        q = env.queue(ack_wait_secs=1)
        await q.publish_batch([(msg("a"), None), (msg("b"), None)])
        got = await poll_until(q, 2)
        waiting = asyncio.ensure_future(q.poll(10))  # the default 20 s expiry
        await asyncio.sleep(0.3)
        stopped_at = time.monotonic()
        await q.stop()
        with pytest.raises(ConsumerStopped):
            await waiting
        assert time.monotonic() - stopped_at < 5  # not the 20 s expiry
        assert not q.is_healthy()
        with pytest.raises(ConsumerStopped):
            await q.poll(10)
        with pytest.raises(ConsumerStopped):
            await q.publish(msg("c"))
        await q.ack(got[0].receipt_handle)  # the router's drain: still answered after stop
        assert q._nc is not None  # "b" is still out: the connection stays for its answer
        await q.nack(got[1].receipt_handle, None, "shutting down")
        await wait_until(lambda: q._nc is None, timeout=5)  # closed once all is answered
        other = env.queue()
        (back,) = await poll_until(other, 1)
        assert back.message.id == "b"
        await other.ack(back.receipt_handle)

    env.run(body)


def test_unanswered_messages_come_back_after_ack_wait_when_closed(env):
    async def body():
        q = env.queue(ack_wait_secs=1)
        await q.publish(msg("left"))
        (m,) = await poll_until(q, 1)
        await q.close()
        with pytest.raises(ReceiptHandleError):
            await q.ack(m.receipt_handle)
        other = env.queue()
        (back,) = await poll_until(other, 1, timeout=5)
        assert back.message.id == "left" and back.receive_count == 2
        await other.ack(back.receipt_handle)

    env.run(body)


def test_metrics_size_and_health(env):
    async def body():
        q = env.queue()
        assert not q.is_healthy()
        await q.publish_batch([(msg("x1"), None), (msg("x2"), None)])
        (one,) = await q.poll(1, wait=2)  # a request for one message gets one
        m = await q.metrics()
        assert (m["pending"], m["in_flight"], m["redelivered"], m["connected"]) == (1, 1, 0, True)
        assert m["effective"] == {"ack_wait": 120.0, "max_deliver": 10, "max_ack_pending": 1000}
        assert await q.size() == 2
        await q.nack(one.receipt_handle, None, "again")
        again = await poll_until(q, 2)
        assert (await q.metrics())["redelivered"] == 1
        for x in again:
            await q.ack(x.receipt_handle)
        assert await q.size() == 0
        await q.stop()
        assert not q.is_healthy() and await q.metrics() is None

    env.run(body)


def test_a_deleted_consumer_or_stream_is_created_again(env):
    async def body():
        q = env.queue()
        await q.start()
        waiting = asyncio.ensure_future(q.poll(10, wait=10))
        await asyncio.sleep(0.3)
        await (await env.admin()).delete_consumer(env.stream, env.consumer)
        with pytest.raises(NatsPollError, match="409 Consumer Deleted"):  # the router logs it, polls again
            await waiting
        await q.publish(msg("after"))
        got = await poll_until(q, 1)  # the next poll creates the consumer again
        assert [m.message.id for m in got] == ["after"]
        await q.ack(got[0].receipt_handle)
        waiting = asyncio.ensure_future(q.poll(10, wait=10))
        await asyncio.sleep(0.3)
        await (await env.admin()).delete_stream(env.stream)  # the whole stream this time
        with pytest.raises(NatsPollError, match="409 Consumer Deleted"):
            await waiting
        await q.publish(msg("recreated"))  # the stream is created again ...
        got = await poll_until(q, 1)  # ... and the consumer by the next poll
        assert [m.message.id for m in got] == ["recreated"]
        assert await q.publish_batch([]) == []

    env.run(body)


# -- reconnecting --------------------------------------------------------------------------------------


class Proxy:
    """A loopback TCP proxy in front of the NATS server whose connections a test can cut."""

    def __init__(self, url):
        parts = urlsplit(url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 4222)
        self.links = []
        self.accepted = 0

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = "nats://127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader, writer):
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.links.append((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()

    def cut(self):
        links, self.links = self.links, []
        for a, b in links:
            a.transport.abort()
            b.transport.abort()

    async def close(self):
        self.cut()
        self.server.close()
        await self.server.wait_closed()


def test_a_dropped_connection_reconnects_and_a_waiting_poll_still_gets_messages(env):
    async def body():
        proxy = await Proxy(env.url).start()
        try:
            q = env.queue(url=proxy.url, reconnect_wait_secs=0.2)
            await q.publish(msg("before"))
            (held,) = await poll_until(q, 1)
            waiting = asyncio.ensure_future(q.poll(10, wait=15))
            await asyncio.sleep(0.2)
            proxy.cut()
            await wait_until(lambda: q.counters["reconnects"] >= 1, timeout=10)
            assert q.counters["disconnects"] >= 1 and proxy.accepted >= 2 and q.is_healthy()
            await q.ack(held.receipt_handle)  # a message held across the reconnect is answered
            await (await env.admin()).publish(env.prefix + ".P", json.dumps(msg("after")).encode())
            got = await waiting  # the open pull request was sent again
            assert [m.message.id for m in got] == ["after"]
            await q.ack(got[0].receipt_handle)
            assert await q.size() == 0 and await env.stream_messages() == 0
        finally:
            await q.close()
            await proxy.close()

    env.run(body)


def _nats_server_binary():
    return shutil.which("nats-server") or next((p for p in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server") if os.path.exists(p)), None)


class PrivateServer:
    """A nats-server of this test alone: its own port and store, stopped by its pid."""

    def __init__(self, binary, store):
        self.binary, self.store, self.port, self.proc = binary, store, free_port(), None

    async def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while _probe("nats://127.0.0.1:%d" % self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("private nats-server did not start")
            await asyncio.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def test_a_server_restart_keeps_messages_and_the_consumer_reconnects(nats_url, tmp_path):
    binary = _nats_server_binary()
    if binary is None:
        pytest.skip("no nats-server binary to run a private server (the proxy test covers reconnects)")
    server = PrivateServer(binary, tmp_path / "js")
    env = Env("nats://127.0.0.1:%d" % server.port)

    async def body():
        await server.start()
        q = env.queue(reconnect_wait_secs=0.2)
        await q.publish_batch([(msg("one"), None), (msg("two"), None)])
        got = await poll_until(q, 2)
        await q.ack(got[0].receipt_handle)
        server.stop()
        await wait_until(lambda: not q.is_healthy(), timeout=10)
        await server.start()  # same port, same store: the file stream and consumer survive
        await wait_until(q.is_healthy, timeout=10)
        await q.ack(got[1].receipt_handle)  # its ack subject still names a live consumer
        await q.publish(msg("three"))
        (m3,) = await poll_until(q, 1)
        assert m3.message.id == "three" and m3.receipt_handle == "%s:3" % env.stream
        await q.ack(m3.receipt_handle)
        assert await q.size() == 0 and q.counters["reconnects"] >= 1

    try:
        env.run(body)
    finally:
        server.stop()


# -- end to end through the router ---------------------------------------------------------------------


async def start_router(queue):
    router = Router(consumer_factory=lambda qc: queue, mediator=fast_mediator())
    await router.start(RouterConfig([PoolConfig("P", 8)], [QueueConfig(queue.settings.servers[0], "nats")]))
    return router


def test_router_delivers_to_a_loopback_target_and_acks(env, target):
    async def body():
        q = env.queue()
        await q.publish_batch([(pointer(target.url("/ok"), "r-%d" % i), None) for i in range(5)])
        router = await start_router(q)
        try:
            await asyncio.to_thread(target.wait_for, 5, "/ok")
            await wait_until(router.is_idle, timeout=5)
            assert sorted(r.json()["messageId"] for r in target.received("/ok")) == ["r-%d" % i for i in range(5)]
            await wait_until(lambda: q.counters["acked"] == 5, timeout=5)
            assert await q.size() == 0
        finally:
            await router.stop(timeout=5)

    env.run(body)


@pytest.mark.parametrize("mode", ["NEXT_ON_ERROR", "BLOCK_ON_ERROR"])
def test_router_keeps_group_order(env, target, mode):
    async def body():
        q = env.queue()
        order = []

        async def slowish(rec):
            order.append(rec.json()["messageId"])
            await asyncio.sleep(0.01)
            return 200, {}, {"ack": True}

        target.on("/g", slowish)
        items = [(pointer(target.url("/g"), "%s-%d" % (g, i), group=g, mode=mode), None) for i in range(8) for g in ("a", "b")]
        await q.publish_batch(items[:8])
        router = await start_router(q)
        try:
            await q.publish_batch(items[8:])  # later batches of the same groups
            await asyncio.to_thread(target.wait_for, 16, "/g")
            for g in ("a", "b"):
                assert [x for x in order if x.startswith(g)] == ["%s-%d" % (g, i) for i in range(8)]
            await wait_until(lambda: q.counters["acked"] == 16, timeout=5)
        finally:
            await router.stop(timeout=5)

    env.run(body)


def test_router_block_on_error_is_strict_with_max_ack_pending_1(env, target):
    async def body():
        q = env.queue(max_ack_pending=1)
        target.on("/b", FailFirst({"g-2": 1}, delay=1))
        router = await start_router(q)
        try:
            for i in range(1, 5):  # published one by one while the router runs
                await q.publish(pointer(target.url("/b"), "g-%d" % i, group="g", mode="BLOCK_ON_ERROR"))
            await asyncio.to_thread(target.wait_for, 5, "/b")
            assert [r.json()["messageId"] for r in target.received("/b")] == ["g-1", "g-2", "g-2", "g-3", "g-4"]
            await wait_until(lambda: q.counters["acked"] == 4, timeout=5)
        finally:
            await router.stop(timeout=5)

    env.run(body)


def test_router_nack_with_delay_then_success(env, target):
    async def body():
        q = env.queue()
        target.on("/n", FailFirst({"late": 1}, delay=1))
        await q.publish(pointer(target.url("/n"), "late"))
        router = await start_router(q)
        try:
            first, second = await asyncio.to_thread(target.wait_for, 2, "/n")
            assert second.at - first.at >= 0.9  # not before the nack's delay
            await wait_until(lambda: q.counters["acked"] == 1, timeout=5)
            assert q.counters["nacked"] == 1 and await q.size() == 0
        finally:
            await router.stop(timeout=5)

    env.run(body)


def test_router_sets_poison_aside_and_goes_on(env, target):
    async def body():
        q = env.queue()
        await q.start()
        await (await env.admin()).publish(env.prefix + ".P", b"{broken")
        await q.publish(pointer(target.url("/ok"), "fine"))
        router = await start_router(q)
        try:
            await asyncio.to_thread(target.wait_for, 1, "/ok")
            await wait_until(lambda: q.counters["acked"] == 1, timeout=5)
            assert len(await q.list_dead_letters()) == 1 and await env.stream_messages() == 0
        finally:
            await router.stop(timeout=5)

    env.run(body)


def test_router_absorbs_redeliveries_of_a_delivery_slower_than_ack_wait(env, target):
    """The broker id is the stream sequence, stable across deliveries: the router takes the
    copies JetStream sends after ack_wait for what they are and acks once, at the end."""

    async def body():
        q = env.queue(ack_wait_secs=1)
        await q.publish(pointer(target.url("/slow/2600"), "slow"))
        router = await start_router(q)
        try:
            await wait_until(lambda: q.counters["acked"] == 1, timeout=10)
            assert len(target.received("/slow/2600")) == 1
            assert q.counters["redelivered"] >= 1  # JetStream did send it again meanwhile
            assert await q.size() == 0
        finally:
            await router.stop(timeout=5)

    env.run(body)


class FirstAckFails(NatsQueue):
    """The first ack raises without reaching the server (as a lost connection would)."""

    failed = 0

    async def ack(self, handle):
        if not self.failed:
            self.failed += 1
            self._take_handle(handle)
            raise ConnectionError("ack lost")
        await super().ack(handle)


def test_router_pending_delete_acks_the_redelivery_of_a_failed_ack(env, target):
    async def body():
        q = env.queue(cls=FirstAckFails, ack_wait_secs=1)
        await q.publish(pointer(target.url("/ok"), "once"))
        router = await start_router(q)
        try:
            await wait_until(lambda: q.counters["acked"] == 1, timeout=10)  # the redelivery, acked
            assert q.failed == 1 and len(target.received("/ok")) == 1  # delivered once only
            assert q.counters["redelivered"] == 1 and await q.size() == 0
        finally:
            await router.stop(timeout=5)

    env.run(body)


def test_router_stop_lets_a_delivery_finish_and_ack(env, target):
    async def body():
        q = env.queue()
        await q.publish(pointer(target.url("/slow/700"), "draining"))
        router = await start_router(q)
        await asyncio.to_thread(target.wait_for, 1, "/slow/700")
        await router.stop(timeout=5)  # stops the consumer first, then drains the pool
        assert q.counters["acked"] == 1 and not q.is_healthy()
        assert await env.stream_messages() == 0

    env.run(body)
