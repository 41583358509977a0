"""NATS JetStream as a queue of the router (router spec §7.6): a QueueConsumer and a
QueuePublisher of the core (flowcatalyst/core/ports.py) over nats-py. Settings and the `nats://`
URI: natsconfig.py; connecting and the stream and consumer set-up: natssetup.py. (Not
`nats.py`: that would shadow the nats-py package.) docs/server.md, "NATS JetStream", has the
ordering each dispatch mode gets.

Theory of operation.
  setup      on first use: connect (nats-py reconnects every reconnect-wait, 2 s, forever by
             default; a first connect that fails within connect-timeout raises, and the
             router's poll loop tries again); get-or-create the stream (WorkQueue retention)
             and the durable pull consumer (explicit ack, filtered on `subject`). One that
             exists with other settings is used as it is, with a WARN naming each difference
             (`setup_warnings`; `effective` holds what is in force); one that cannot work
             (subject not covered, push consumer, another filter, ack not explicit) raises
             NatsSetupError.
  poll       deliveries arrive on one inbox subscription into a buffer; poll(n) hands out
             what the buffer holds (at most n). When it is empty and no pull request is open,
             poll sends one ({batch: n, expires: poll timeout}) and waits for the first
             delivery, the request's end, stop(), a reconnect or the timeout. The request
             stays open after its first delivery, so at most one batch arrives ahead of the
             router (nats-py's fetch(n) waits for a whole batch: one message could wait 20 s).
             A poll that waits costs nothing, so `wakes_on_publish` is True and the router
             polls again at once.
  envelope   receipt handle and broker id `<stream>:<streamSeq>`, identifier
             `<stream>/<consumer>`, receive count = JetStream's delivery count. The newest
             delivery of each handle is kept for its answer. Spec §1.2 gives the broker id as
             `<streamSeq>:<consumerSeq>`, but the consumer sequence changes with every
             delivery: the router would take a redelivery of a message still in flight for a
             re-published copy and ack (delete) it, and its pending-delete could never match.
  poison     a payload that is not a valid pointer is terminated (never redelivered), logged
             with its first bytes and kept as a dead letter with the reason.
  answers    ack → AckAck (waits for the server, so a failed ack raises and the router's
             pending-delete acks the redelivery); nack(d) → Nak with delay d (plain Nak for
             0/None); defer → the same, counted apart; extend_visibility → +WPI (a fresh
             ack_wait). JetStream counts every delivery against max_deliver, so on a message's
             last allowed delivery a nack terminates it and dead-letters it with the reason,
             and a defer (not an attempt) publishes a fresh copy before terminating it.
  reconnect  the open pull request is sent again on reconnect; answers made meanwhile wait
             in nats-py's buffer and go out once connected.
  stop       ends a waiting poll at once (later polls raise ConsumerStopped), stops the
             subscription, naks deliveries never handed out (available again at once), and
             closes the connection when every handed-out message is answered (the router's
             drain) or ack_wait has passed; close() does it now. The server redelivers
             anything unanswered after its ack_wait.

Dead letters live in this process (list / replay / delete as SqliteQueue's); the stream keeps
nothing of a terminated message. A message whose last allowed delivery ends without any answer
(the process died) is not redelivered by JetStream and stays in the stream until max-age.
"""

import asyncio
import json
from collections import deque

from nats.errors import NoRespondersError
from nats.js import api
from nats.js.errors import NoStreamResponseError

from flowcatalyst.core.compat import monotonic, uuid4, wall_time
from flowcatalyst.core.log import logger
from flowcatalyst.core.memqueue import DeadLetter
from flowcatalyst.core.message import MessageError, parse_message
from flowcatalyst.core.ports import (
    ConsumerStopped,
    PublishResult,
    QueuedMessage,
    ReceiptHandleError,
)

from .natsconfig import NatsSettings
from .natssetup import NatsSetupError, connect, ensure_consumer, ensure_stream, safe_url

__all__ = ["NatsQueue", "NatsSettings", "NatsSetupError", "NatsPollError", "Unparsed"]

_log = logger("natsqueue")

API_PREFIX = "$JS.API"
MAX_DEAD_LETTERS = 1000
LOG_PAYLOAD_BYTES = 200  # of a poison payload, in its log line
KEEP_PAYLOAD_BYTES = 65536  # of a poison payload, in its dead letter
REQUEST_GRACE = 1.0  # a pull request whose end was never seen is given up this long after expiry
MIN_EXPIRES = 0.05
_NORMAL_409 = ("server shutdown", "leadership change")


class NatsPollError(Exception):
    """The server ended a pull request with an error (consumer deleted, no responders...)."""


class NatsQueue:
    wakes_on_publish = True

    def __init__(self, settings=None):
        """`settings`: a NatsSettings, a `nats://` URI, or None for the §7.6 defaults."""
        if settings is None or isinstance(settings, str):
            settings = NatsSettings.from_uri(settings or "nats://localhost:4222")
        self.settings = settings
        self.identifier = "%s/%s" % (settings.stream, settings.consumer)
        self.effective = {"ack_wait": settings.ack_wait, "max_deliver": settings.max_deliver, "max_ack_pending": settings.max_ack_pending}
        self.setup_warnings = []
        self.on_dead_letter = None  # optional callback(DeadLetter)
        self.counters = dict.fromkeys(
            ("published", "duplicates", "received", "redelivered", "acked", "nacked", "deferred", "requeued", "extended", "poison", "dead_lettered", "disconnects", "reconnects"),
            0,
        )
        self._next_subject = "%s.CONSUMER.MSG.NEXT.%s.%s" % (API_PREFIX, settings.stream, settings.consumer)
        self._nc = None
        self._js = None
        self._lock = asyncio.Lock()
        self._stream_ready = False
        self._consumer_ready = False
        self._sub = None
        self._inbox = None
        self._arrived = deque()  # deliveries not handed out yet
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._req = None  # the open pull request: [reply subject, credit left, give-up time]
        self._req_count = 0
        self._req_error = None
        self._pending = {}  # receipt handle -> (newest JetStream delivery, parsed Message)
        self._answered = asyncio.Event()  # set when a stopped queue has nothing left to answer
        self._answering = 0  # answers on their way to the server
        self._dead = []
        self._stopped = False
        self._closer = None
        self._last_error = None

    @classmethod
    def from_uri(cls, uri):
        return cls(NatsSettings.from_uri(uri))

    # -- setup ----------------------------------------------------------------------------------

    async def start(self):
        """Connect and make sure the stream and the consumer exist (the first poll does it)."""
        await self._setup(True)

    def _ready(self, consume):
        nc = self._nc
        if nc is None or nc.is_closed or not self._stream_ready:
            return False
        return not consume or (self._consumer_ready and self._sub is not None)

    async def _setup(self, consume):
        if self._ready(consume):
            return
        async with self._lock:
            if self._stopped:
                raise ConsumerStopped("queue %s is stopped" % self.identifier)
            if self._nc is None or self._nc.is_closed:
                await self._connect()
            if not self._stream_ready:
                await self._ensure_stream()
            if consume and not self._consumer_ready:
                await self._ensure_consumer()
            if consume and self._sub is None:
                self._inbox = self._nc.new_inbox()
                self._sub = await self._nc.subscribe(self._inbox + ".*", cb=self._on_delivery)

    async def _connect(self):
        self._stream_ready = self._consumer_ready = False
        self._sub = self._req = None
        callbacks = {
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
        }
        nc = await connect(self.settings, callbacks, lambda: self._last_error)
        self._nc = nc
        self._js = nc.jetstream(timeout=self.settings.request_timeout)
        _log.info("connected to NATS", queue=self.identifier, server=safe_url(nc.connected_url.geturl() if nc.connected_url else ""))

    async def _ensure_stream(self):
        s = self.settings
        created, warnings = await ensure_stream(self._js, s)
        if created:
            _log.info("stream created", stream=s.stream, subjects=[s.subject], storage=s.storage)
        self._warn(warnings)
        self._stream_ready = True

    async def _ensure_consumer(self):
        s = self.settings
        created, warnings, self.effective = await ensure_consumer(self._js, s)
        if created:
            _log.info("consumer created", stream=s.stream, consumer=s.consumer, subject=s.subject, ackWait=s.ack_wait, maxDeliver=s.max_deliver)
        self._warn(warnings)
        self._consumer_ready = True

    def _warn(self, warnings):
        for text in warnings:
            if text not in self.setup_warnings:
                self.setup_warnings.append(text)
            _log.warn(text, queue=self.identifier)

    # -- connection events (nats-py callbacks) ----------------------------------------------------

    async def _on_error(self, e):
        self._last_error = e
        _log.debug("NATS connection error", queue=self.identifier, error=repr(e))

    async def _on_disconnected(self):
        if self._stopped:
            return
        self.counters["disconnects"] += 1
        _log.warn("NATS connection lost: reconnecting", queue=self.identifier)
        self._req = None  # the server forgets it with the connection: ask again
        self._wake.set()

    async def _on_reconnected(self):
        self.counters["reconnects"] += 1
        url = self._nc.connected_url if self._nc is not None else None
        _log.info("NATS reconnected", queue=self.identifier, server=safe_url(url.geturl() if url else ""))
        self._req = None
        self._wake.set()

    async def _on_closed(self):
        self._wake.set()

    # -- consuming ------------------------------------------------------------------------------

    async def poll(self, max_messages=10, wait=None):
        if self._stopped:
            raise ConsumerStopped("queue %s is stopped" % self.identifier)
        if not self._ready(True):
            await self._until_stopped(self._setup(True))
        n = max(1, min(max_messages, self.settings.max_messages))
        wait = self.settings.poll_timeout if wait is None else wait
        deadline = monotonic() + wait
        while True:
            if self._stopped:
                raise ConsumerStopped("queue %s is stopped" % self.identifier)
            if self._arrived:
                batch = await self._take(n)
                if batch:
                    return batch
                continue  # only poison: look again
            if self._req_error is not None:
                error, self._req_error = self._req_error, None
                raise NatsPollError(error)
            if not self._ready(True):
                await self._until_stopped(self._setup(True))
            now = monotonic()
            if now >= deadline:
                return []
            if self._req is None or now >= self._req[2]:
                await self._pull(n, deadline - now)
            self._wake.clear()
            if self._arrived or self._stopped or self._req is None or self._req_error is not None:
                continue  # something happened while the request went out
            try:
                await asyncio.wait_for(self._wake.wait(), max(min(deadline, self._req[2]) - monotonic(), 0.001))
            except asyncio.TimeoutError:
                pass

    async def _pull(self, n, wait):
        wait = max(wait, MIN_EXPIRES)
        self._req_count += 1
        reply = "%s.%d" % (self._inbox, self._req_count)
        self._req = [reply, n, monotonic() + wait + REQUEST_GRACE]
        body = json.dumps({"batch": n, "expires": int(wait * 1e9)}).encode()
        await self._nc.publish(self._next_subject, body, reply=reply)

    async def _on_delivery(self, msg):
        headers = msg.headers
        status = headers.get("Status") if headers and not msg.reply else None
        if status is not None:
            self._request_ended(msg.subject, status, headers.get(api.Header.DESCRIPTION) or headers.get("Description") or "")
        else:
            self._arrived.append(msg)
            req = self._req
            if req is not None:
                req[1] -= 1
                if req[1] <= 0:
                    self._req = None
        self._wake.set()

    def _request_ended(self, subject, status, description):
        current = self._req is not None and self._req[0] == subject
        if current:
            self._req = None
        if status in ("100", "404", "408") or description.lower() in _NORMAL_409:
            return  # heartbeat, no messages, expired, server going away: a new request follows
        if status == "503" or "deleted" in description.lower():  # stream or consumer gone
            self._stream_ready = self._consumer_ready = False
        if current:
            self._req_error = "pull request on %s ended: %s %s" % (self.identifier, status, description)

    async def _until_stopped(self, coro):
        """Await `coro` unless stop() comes first (then ConsumerStopped)."""
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self._stop_event.wait())
        try:
            done, _ = await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not task.done():
                task.cancel()
        if task not in done:
            raise ConsumerStopped("queue %s is stopped" % self.identifier)
        return task.result()

    async def _take(self, n):
        out, index = [], {}
        while self._arrived and len(out) < n:
            queued = await self._receive(self._arrived.popleft())
            if queued is None:
                continue
            at = index.get(queued.receipt_handle)
            if at is not None:  # a newer delivery of a message already in this batch
                out[at] = queued
                continue
            index[queued.receipt_handle] = len(out)
            out.append(queued)
        self.counters["received"] += len(out)
        return out

    async def _receive(self, msg):
        try:
            meta = msg.metadata
        except Exception:
            _log.error("delivery without JetStream metadata ignored", queue=self.identifier, subject=msg.subject)
            return None
        handle = "%s:%d" % (self.settings.stream, meta.sequence.stream)
        try:
            message = parse_message(msg.data)
        except MessageError as e:
            await self._poison(msg, handle, meta.num_delivered, str(e))
            return None
        self._pending[handle] = (msg, message)
        if meta.num_delivered > 1:
            self.counters["redelivered"] += 1
        return QueuedMessage(message, handle, handle, self.identifier, meta.num_delivered)

    async def _poison(self, msg, handle, deliveries, error):
        try:
            await msg.term()
        except Exception as e:
            _log.warn("could not terminate a poison message", queue=self.identifier, handle=handle, error=repr(e))
        self.counters["poison"] += 1
        data = bytes(msg.data)
        reason = "not a valid message pointer: %s" % error
        _log.error(
            "poison message terminated",
            queue=self.identifier,
            handle=handle,
            reason=reason,
            size=len(data),
            payload=data[:LOG_PAYLOAD_BYTES].decode("utf-8", "replace"),
        )
        msg_id = (msg.headers or {}).get("Nats-Msg-Id") or handle
        self._dead_letter(Unparsed(msg_id, data[:KEEP_PAYLOAD_BYTES]), reason, deliveries)

    # -- answering ------------------------------------------------------------------------------

    def _take_handle(self, handle, keep=False):
        entry = self._pending.get(handle) if keep else self._pending.pop(handle, None)
        if entry is None:
            raise ReceiptHandleError("unknown or expired receipt handle %r on %s" % (handle, self.identifier))
        return entry

    def _answered_one(self):
        """After an answer went out: a stopped queue closes once nothing is left to answer."""
        self._answering -= 1
        if self._stopped and not self._pending and not self._answering:
            self._answered.set()

    def _last_delivery(self, msg):
        limit = self.effective["max_deliver"]
        return limit is not None and limit > 0 and msg.metadata.num_delivered >= limit

    async def ack(self, handle):
        msg, _ = self._take_handle(handle)
        self._answering += 1
        try:
            await msg.ack_sync(timeout=self.settings.request_timeout)
        finally:
            self._answered_one()
        self.counters["acked"] += 1

    async def nack(self, handle, delay=None, reason=None):
        msg, message = self._take_handle(handle)
        self._answering += 1
        try:
            if self._last_delivery(msg):
                count = msg.metadata.num_delivered
                await msg.term()
                self._dead_letter(message, "failed %d times (max-deliver); last error: %s" % (count, reason or "none"), count)
                _log.error("message dead-lettered", queue=self.identifier, messageId=message.id, group=message.message_group_id, deliveries=count, reason=reason)
            else:
                await msg.nak(delay=delay or None)
        finally:
            self._answered_one()
        self.counters["nacked"] += 1

    async def defer(self, handle, delay=None):
        msg, message = self._take_handle(handle)
        self._answering += 1
        try:
            if self._last_delivery(msg):
                await self._requeue(msg, message)
            else:
                await msg.nak(delay=delay or None)
        finally:
            self._answered_one()
        self.counters["deferred"] += 1

    async def _requeue(self, msg, message):
        """A deferral is not an attempt, but JetStream would not deliver this message again:
        publish a fresh copy (at the end of the stream, available at once), then terminate it."""
        seq = msg.metadata.sequence.stream
        headers = dict(msg.headers or {})
        headers["Nats-Msg-Id"] = "%s~requeued~%d" % (headers.get("Nats-Msg-Id") or message.id, seq)
        await self._js.publish(msg.subject, msg.data, headers=headers, stream=self.settings.stream)
        await msg.term()
        self.counters["requeued"] += 1
        _log.info("deferred on its last allowed delivery: published again", queue=self.identifier, messageId=message.id, streamSeq=seq)

    async def extend_visibility(self, handle, seconds):
        """JetStream restarts the message's ack_wait (+WPI); `seconds` beyond ack_wait needs
        repeated calls."""
        msg, _ = self._take_handle(handle, keep=True)
        await msg.in_progress()
        self.counters["extended"] += 1

    # -- dead letters ---------------------------------------------------------------------------

    def _dead_letter(self, message, reason, count):
        letter = DeadLetter(message, reason, count, wall_time(), self.identifier)
        self._dead.append(letter)
        if len(self._dead) > MAX_DEAD_LETTERS:
            del self._dead[0]
        self.counters["dead_lettered"] += 1
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(letter)
            except Exception as e:  # a listener's bug must not break the queue
                _log.error("on_dead_letter callback failed", queue=self.identifier, error=repr(e))

    async def list_dead_letters(self, limit=100, offset=0):
        return self._dead[offset : offset + limit]

    async def replay_dead_letters(self, message_ids=None):
        """Publish dead letters (all, or those with these ids) again, with a fresh delivery
        count; a poison payload stays a dead letter. Returns how many."""
        wanted = None if message_ids is None else set(message_ids)
        chosen = [d for d in self._dead if not isinstance(d.message, Unparsed) and (wanted is None or d.message.id in wanted)]
        if chosen:
            await self.publish_batch([(d.message, "replay:%s:%s" % (d.message.id, uuid4())) for d in chosen])
        for d in chosen:
            self._dead.remove(d)
        return len(chosen)

    async def delete_dead_letters(self, message_ids=None):
        before = len(self._dead)
        if message_ids is None:
            self._dead = []
        else:
            ids = set(message_ids)
            self._dead = [d for d in self._dead if d.message.id not in ids]
        return before - len(self._dead)

    # -- publishing -----------------------------------------------------------------------------

    async def publish(self, message, dedup_id=None):
        return (await self.publish_batch([(message, dedup_id)]))[0]

    async def publish_batch(self, items):
        """Publish (message, dedup_id) pairs in order; a message may be a Message or a pointer
        (parsed first: MessageError before anything is sent). `Nats-Msg-Id` is the dedup id or
        the message id, so JetStream's duplicate window drops a repeat (DUPLICATE). Not
        atomic: on an error, earlier items may be stored (publishing them again is safe)."""
        prepared = []
        for message, dedup_id in items:
            if not hasattr(message, "mediation_target"):
                message = parse_message(message)
            prepared.append((self.settings.publish_subject_for(message), message, dedup_id or message.id))
        if self._stopped:
            raise ConsumerStopped("queue %s is stopped" % self.identifier)
        if not prepared:
            return []
        await self._setup(False)
        futures = []
        for subject, message, key in prepared:
            headers = {"Nats-Msg-Id": key}
            futures.append(await self._js.publish_async(subject, message.to_json().encode(), headers=headers, stream=self.settings.stream))
        done, late = await asyncio.wait(futures, timeout=self.settings.request_timeout)
        for f in late:
            f.cancel()
        results, error = [], None
        for future, (_, message, _) in zip(futures, prepared, strict=True):
            if future.cancelled() or future.exception() is not None:
                e = future.exception() if not future.cancelled() else asyncio.TimeoutError("no acknowledgement within %ss" % self.settings.request_timeout)
                error = error or e
                continue
            duplicate = future.result().duplicate
            self.counters["duplicates" if duplicate else "published"] += 1
            results.append(PublishResult(message.id, PublishResult.DUPLICATE if duplicate else PublishResult.ACCEPTED))
        if error is not None:
            if isinstance(error, (NoStreamResponseError, NoRespondersError)):
                self._stream_ready = False  # the stream went away: set it up again next time
            raise error
        return results

    # -- the rest of the port -------------------------------------------------------------------

    def is_healthy(self):
        return not self._stopped and self._nc is not None and self._nc.is_connected

    async def _consumer_info(self):
        if self._stopped:
            return None
        await self._setup(True)
        return await self._js.consumer_info(self.settings.stream, self.settings.consumer, timeout=self.settings.request_timeout)

    async def metrics(self):
        """From the consumer's info: `pending` (not delivered yet), `in_flight` (delivered,
        not answered: num_ack_pending), `redelivered` (num_redelivered), `waiting` (open pull
        requests); `dead_lettered` (held here now), the effective settings and the counters."""
        info = await self._consumer_info()
        if info is None:
            return None
        return {
            "pending": info.num_pending,
            "in_flight": info.num_ack_pending,
            "redelivered": info.num_redelivered,
            "waiting": info.num_waiting,
            "dead_lettered": len(self._dead),
            "poison": self.counters["poison"],
            "connected": self.is_healthy(),
            "effective": dict(self.effective),
            "counters": dict(self.counters),
        }

    async def size(self):
        """Messages this consumer has still to finish: pending plus in flight."""
        info = await self._consumer_info()
        return 0 if info is None else info.num_pending + info.num_ack_pending

    async def stop(self):
        if self._stopped:
            return
        self._stopped = True
        self._stop_event.set()
        self._wake.set()
        self._req = None
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        buffered = list(self._arrived)
        self._arrived.clear()
        for msg in buffered:  # never handed out: available again at once
            try:
                await msg.nak()
            except Exception:
                pass
        if (self._pending or self._answering) and self._nc is not None and not self._nc.is_closed:
            self._answered.clear()
            self._closer = asyncio.ensure_future(self._close_when_answered())
        else:
            await self._close_connection()

    async def _close_when_answered(self):
        if self._pending or self._answering:
            try:
                await asyncio.wait_for(self._answered.wait(), self.effective["ack_wait"])
            except asyncio.TimeoutError:
                _log.warn("closing with unanswered messages: the server redelivers them", queue=self.identifier, count=len(self._pending))
        await self._close_connection()

    async def close(self):
        """Stop and close the connection now; unanswered messages come back after ack_wait."""
        if not self._stopped:
            self._stopped = True
            self._stop_event.set()
            self._wake.set()
        closer, self._closer = self._closer, None
        if closer is not None and not closer.done():
            closer.cancel()
        await self._close_connection()

    async def _close_connection(self):
        self._pending.clear()
        nc, self._nc = self._nc, None
        if nc is None or nc.is_closed:
            return
        try:
            await nc.flush(timeout=1)
        except Exception:
            pass
        try:
            await nc.close()
        except Exception as e:
            _log.warn("NATS close failed", queue=self.identifier, error=repr(e))


class Unparsed:
    """A dead letter whose payload is not a valid pointer: shown as it arrived."""

    __slots__ = ("id", "payload")

    def __init__(self, msg_id, payload):
        self.id = msg_id
        self.payload = payload

    def to_dict(self):
        text = self.payload.decode("utf-8", "replace")
        try:
            return {"id": self.id, "raw": json.loads(text)}
        except ValueError:
            return {"id": self.id, "raw": text}
