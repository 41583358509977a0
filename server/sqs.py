"""Amazon SQS (or an SQS-compatible server) as a queue of the router: a QueueConsumer and a
QueuePublisher of the core (flowcatalyst/core/ports.py) for one queue, over botocore's
low-level client (router spec §7.2).

Theory of operation. botocore blocks, so no call runs on the event loop (sqsio.py):

  poll     one ReceiveMessage at a time per queue (up to 10 messages, a 20 s long poll, the
           queue config's visibility timeout), in the queue's own thread. A poll whose caller
           was cancelled leaves its receive running; the next poll takes it over instead of
           starting another, so exactly one is ever in flight.
  receive  a copy of a message acked here within 15 minutes (pending-delete, by MessageId:
           SQS is at-least-once, and a failed delete brings the message back) is deleted at
           once and not returned; a body that is not a message pointer is deleted and kept
           as a dead letter (its reason and first 1 KiB; logged with its first 200
           characters); the rest are returned with their receipt handle, MessageId and
           ApproximateReceiveCount.
  ack      remembers the MessageId for pending-delete (whatever the delete's outcome), then
           deletes: the acks of one event-loop turn go out as DeleteMessageBatch requests of
           ten, and a failed entry raises in the ack it belongs to.
  nack, defer, extend_visibility
           ChangeMessageVisibility (0 for None; at most what is left of SQS's 12 hours since
           the receive), batched the same way. SQS has nowhere to keep a nack's reason.
  stop     wakes a waiting poll at once (it raises ConsumerStopped), so shutdown never waits
           for a long poll; the receive runs on in its daemon thread until SQS answers, and
           anything it brings back is made visible again at once. Answers (acks of messages
           still being delivered) keep working after stop.

SQS keeps its own dead-letter queue (a redrive policy's maxReceiveCount); the dead letters
here are only the poison bodies this consumer deleted, held in memory. They cannot be
replayed: they are not pointers.
"""

import asyncio
import hashlib
import math
from collections import deque

from flowcatalyst.core import jsoncodec
from flowcatalyst.core.compat import monotonic, wall_time
from flowcatalyst.core.log import logger
from flowcatalyst.core.memqueue import DeadLetter
from flowcatalyst.core.message import MessageError, parse_message
from flowcatalyst.core.ports import ConsumerStopped, PublishResult, QueuedMessage

from .sqsio import (
    MAX_BATCH,
    Batcher,
    Lane,
    SqsError,
    call_error,
    check_queue_url,
    failures,
    is_sqs_url,
    make_client,
    region_from_url,
    shared_executor,
)

__all__ = ["SqsQueue", "SqsError", "is_sqs_url", "make_client"]

_log = logger("sqs")

MAX_WAIT = 20  # s, SQS's longest long poll
MAX_VISIBILITY = 43200  # s, SQS's ceiling on a message's invisibility since its receive
PENDING_DELETE_TTL = 900.0
POISON_KEPT = 1024  # characters of a poison body kept in its dead letter
POISON_LOGGED = 200
MAX_DEAD_LETTERS = 1000
MAX_BATCH_BYTES = 256 * 1024  # SendMessageBatch's limit on the bodies of one request
UNHEALTHY_AFTER = 3  # receives failing in a row
HANDLE_SWEEP_INTERVAL = 60.0


class SqsQueue:
    wakes_on_publish = False  # polls cost money: the router paces itself between them

    def __init__(
        self,
        queue_url,
        visibility_timeout=120,
        wait_seconds=MAX_WAIT,
        client=None,
        executor=None,
        region=None,
        max_dead_letters=MAX_DEAD_LETTERS,
        pending_delete_ttl=PENDING_DELETE_TTL,
        clock=monotonic,
    ):
        """`client`: a botocore SQS client (default: `make_client` for the URL's region);
        `executor`: where calls other than the long poll run (default: one shared by all queues)."""
        self.queue_url = check_queue_url(queue_url)
        self.identifier = queue_url.rstrip("/").rsplit("/", 1)[-1]
        self.fifo = self.identifier.endswith(".fifo")
        self.visibility_timeout = max(0, min(MAX_VISIBILITY, int(visibility_timeout)))
        self.wait_seconds = max(0, min(MAX_WAIT, int(wait_seconds)))
        self.client = client if client is not None else make_client(region or region_from_url(queue_url))
        self.max_dead_letters = max_dead_letters
        self.pending_delete_ttl = pending_delete_ttl
        self.clock = clock
        self.on_dead_letter = None  # optional callback(DeadLetter)
        self.counters = {
            "published": 0,
            "duplicates": 0,  # always 0: SQS does not say when it drops a duplicate
            "received": 0,
            "acked": 0,
            "nacked": 0,
            "deferred": 0,
            "dead_lettered": 0,
            "ack_failures": 0,
            "redeliveries_deleted": 0,
            "returned": 0,
        }
        self._executor = executor or shared_executor()
        self._handles = {}  # receipt handle -> (MessageId, clock at receive)
        self._next_sweep = clock() + HANDLE_SWEEP_INTERVAL
        self._deleted = {}  # MessageId -> clock when acked (pending-delete)
        self._deleted_order = deque()  # (clock, MessageId), oldest first
        self._dead = []  # DeadLetter, oldest first
        self._deletes = Batcher(self._run, self._delete_batch)
        self._visibility = Batcher(self._run, self._visibility_batch)
        self._lane = None
        self._receiving = None  # the receive in flight (an asyncio future)
        self._polling = False
        self._stopped = False
        self._stop_signal = None
        self._receive_failures = 0
        self._background = set()
        _warn_on_endpoint_mismatch(self.queue_url, self.client)

    def _run(self, fn, *args):
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def __repr__(self):
        return "<SqsQueue %s>" % self.queue_url

    # -- consuming ----------------------------------------------------------------------------

    async def poll(self, max_messages=10):
        if self._stopped:
            raise ConsumerStopped("queue %s is stopped" % self.identifier)
        if self._polling:
            raise RuntimeError("queue %s is already being polled" % self.identifier)
        if max_messages < 1:
            return []
        loop = asyncio.get_running_loop()
        if self._stop_signal is None or self._stop_signal.get_loop() is not loop:
            self._stop_signal = loop.create_future()
        receiving = self._receiving
        if receiving is None:  # else: a receive whose poll was cancelled, taken over
            if self._lane is None:
                self._lane = Lane("sqs-receive-" + self.identifier)
            receiving = self._receiving = self._lane.submit(loop, self._receive, min(max_messages, MAX_BATCH))
            receiving.add_done_callback(self._received)
        self._polling = True
        try:
            await asyncio.wait((receiving, self._stop_signal), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._polling = False
        if self._stopped:
            raise ConsumerStopped("queue %s is stopped" % self.identifier)
        self._receiving = None
        try:
            response = receiving.result()
        except Exception:
            self._receive_failures += 1
            raise
        self._receive_failures = 0
        return self._accept(response.get("Messages") or ())

    def _receive(self, count):  # in the lane's thread
        return self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self.wait_seconds,
            VisibilityTimeout=self.visibility_timeout,
            MessageSystemAttributeNames=["All"],  # ApproximateReceiveCount among them
        )

    def _received(self, receiving):
        """A receive ended after stop(): nobody will take its messages, so give them back."""
        if self._stopped and self._receiving is receiving:
            self._receiving = None
            self._give_back(receiving)

    def _give_back(self, receiving):
        if receiving.cancelled() or receiving.exception() is not None:
            return
        for queued in self._accept(receiving.result().get("Messages") or (), returned=True):
            self._in_background(self._return(queued))

    async def _return(self, queued):
        self._handles.pop(queued.receipt_handle, None)
        try:
            await self._visibility.submit((queued.receipt_handle, 0))
            self.counters["returned"] += 1
        except Exception as e:  # it comes back when its visibility timeout ends
            _log.warn("could not give back a message received after stop", queue=self.identifier, messageId=queued.message.id, error=repr(e))

    def _accept(self, received, returned=False):
        """Sort a receive's messages: pending-delete copies and poison bodies are deleted here;
        the rest become QueuedMessages."""
        now = self.clock()
        self._forget_expired(now)
        out = []
        for m in received:
            broker_id = m.get("MessageId")
            handle = m["ReceiptHandle"]
            if broker_id in self._deleted:
                self.counters["redeliveries_deleted"] += 1
                _log.info("redelivery of an acknowledged message: deleted", queue=self.identifier, brokerMessageId=broker_id)
                self._in_background(self._delete_quietly(handle, broker_id, "redelivery"))
                continue
            attributes = m.get("Attributes") or {}
            count = _int(attributes.get("ApproximateReceiveCount"), 1)
            body = m.get("Body") or ""
            try:
                message = parse_message(body)
            except MessageError as e:
                self._poison(broker_id, handle, body, e, count)
                continue
            self._handles[handle] = (broker_id, now)
            out.append(QueuedMessage(message, handle, broker_id, self.identifier, count))
        if not returned:
            self.counters["received"] += len(out)
        return out

    def _forget_expired(self, now):
        order, deleted = self._deleted_order, self._deleted
        cutoff = now - self.pending_delete_ttl
        while order and order[0][0] <= cutoff:
            at, broker_id = order.popleft()
            if deleted.get(broker_id) == at:
                del deleted[broker_id]
        if now >= self._next_sweep:  # handles never answered (their pipeline entry was reaped)
            self._next_sweep = now + HANDLE_SWEEP_INTERVAL
            stale = [h for h, (_, at) in self._handles.items() if now - at > MAX_VISIBILITY]
            for handle in stale:
                del self._handles[handle]

    def _remember_deleted(self, broker_id):
        if broker_id:
            now = self.clock()
            self._deleted[broker_id] = now
            self._deleted_order.append((now, broker_id))

    def _poison(self, broker_id, handle, body, error, count):
        reason = "not a valid message pointer: %s" % error
        dead = DeadLetter(_Poison(broker_id, body[:POISON_KEPT]), reason, count, wall_time(), self.identifier)
        if len(self._dead) >= self.max_dead_letters:
            del self._dead[0]
        self._dead.append(dead)
        self.counters["dead_lettered"] += 1
        _log.error("poison message deleted and dead-lettered", queue=self.identifier, brokerMessageId=broker_id, reason=reason, bodyStart=body[:POISON_LOGGED])
        self._in_background(self._delete_quietly(handle, broker_id, "poison"))
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(dead)
            except Exception as e:  # a listener's bug must not break the poll
                _log.error("on_dead_letter callback failed", queue=self.identifier, error=repr(e))

    async def _delete_quietly(self, handle, broker_id, why):
        self._remember_deleted(broker_id)
        try:
            await self._deletes.submit(handle)
        except Exception as e:  # it comes back, and pending-delete deletes it then
            _log.warn("delete failed", queue=self.identifier, brokerMessageId=broker_id, why=why, error=repr(e))

    def _in_background(self, coro):
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- answering ------------------------------------------------------------------------------

    async def ack(self, handle):
        entry = self._handles.pop(handle, None)
        if entry is not None:
            self._remember_deleted(entry[0])  # before the delete, whatever its outcome (§7.2)
        try:
            await self._deletes.submit(handle)
        except Exception:
            self.counters["ack_failures"] += 1
            raise
        self.counters["acked"] += 1

    async def nack(self, handle, delay=None, reason=None):
        await self._visibility.submit((handle, self._visibility_for(handle, delay, True)))
        self.counters["nacked"] += 1
        if reason:
            _log.debug("nacked", queue=self.identifier, delay=delay, reason=reason)

    async def defer(self, handle, delay=None):
        await self._visibility.submit((handle, self._visibility_for(handle, delay, True)))
        self.counters["deferred"] += 1

    async def extend_visibility(self, handle, seconds):
        await self._visibility.submit((handle, self._visibility_for(handle, seconds, False)))

    def _visibility_for(self, handle, seconds, answered):
        """Whole seconds (None → 0), within what is left of SQS's 12 h since the receive."""
        entry = self._handles.pop(handle, None) if answered else self._handles.get(handle)
        limit = MAX_VISIBILITY
        if entry is not None:
            limit = max(0, int(MAX_VISIBILITY - (self.clock() - entry[1])))
        return max(0, min(limit, int(math.ceil(seconds or 0))))

    def _delete_batch(self, handles):  # in the executor
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
        return failures(self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries))

    def _visibility_batch(self, items):  # in the executor
        entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": s} for i, (h, s) in enumerate(items)]
        return failures(self.client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries))

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, message, dedup_id=None):
        return (await self.publish_batch([(message, dedup_id)]))[0]

    async def publish_batch(self, items):
        """Send (message, dedup_id) pairs — a message may be a Message or a pointer (parsed
        here: MessageError before anything is sent) — in SendMessageBatch requests of up to
        ten, in order. On a FIFO queue each carries MessageGroupId (the pointer's group, or
        "default") and MessageDeduplicationId (`dedup_id`, or the message id). Returns a
        PublishResult per item (always ACCEPTED: SQS drops a duplicate silently); raises
        SqsError for entries SQS refused, with `sent` (the results of those it took, earlier
        requests included) and `failed` ([(message id, exception)])."""
        prepared = []
        for message, dedup_id in items:
            if not hasattr(message, "mediation_target"):
                message = parse_message(message)
            prepared.append((message, self._send_entry(message, dedup_id)))
        results = []
        for chunk in _chunks(prepared):
            try:
                failed = await self._run(self._send_batch, [entry for _, entry in chunk])
            except Exception as e:  # the request as a whole
                failed = {i: call_error(e) for i in range(len(chunk))}
            sent = [PublishResult(m.id, PublishResult.ACCEPTED) for i, (m, _) in enumerate(chunk) if i not in failed]
            results.extend(sent)
            self.counters["published"] += len(sent)
            if failed:
                error = SqsError("SendMessageBatch", "%d of %d messages not sent: %s" % (len(failed), len(chunk), "; ".join(str(e) for e in failed.values())))
                error.sent = results
                error.failed = [(chunk[i][0].id, e) for i, e in sorted(failed.items())]
                raise error
        return results

    def _send_entry(self, message, dedup_id):
        entry = {"MessageBody": message.to_json()}
        if self.fifo:
            entry["MessageGroupId"] = _sqs_token(message.message_group_id or "default")
            entry["MessageDeduplicationId"] = _sqs_token(dedup_id or message.id)
        return entry

    def _send_batch(self, entries):  # in the executor
        for i, entry in enumerate(entries):
            entry["Id"] = str(i)
        return failures(self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries))

    # -- dead letters (poison bodies only) ----------------------------------------------------

    async def list_dead_letters(self, limit=100, offset=0):
        return self._dead[offset : offset + limit]

    async def replay_dead_letters(self, message_ids=None):
        """Always 0: a poison body is not a pointer, so there is nothing to put back. (Messages
        that failed too often are in the queue's SQS dead-letter queue: redrive them there.)"""
        return 0

    async def delete_dead_letters(self, message_ids=None):
        before = len(self._dead)
        self._dead = [] if message_ids is None else [d for d in self._dead if d.message.id not in message_ids]
        return before - len(self._dead)

    # -- the rest of the port -----------------------------------------------------------------

    async def metrics(self):
        a = await self._run(self._attributes)
        return {
            "pending": _int(a.get("ApproximateNumberOfMessages")),
            "in_flight": _int(a.get("ApproximateNumberOfMessagesNotVisible")),
            "delayed": _int(a.get("ApproximateNumberOfMessagesDelayed")),
            "dead_lettered": len(self._dead),
        }

    async def size(self):
        """Messages in the queue, in flight and delayed included (SQS's approximations)."""
        m = await self.metrics()
        return m["pending"] + m["in_flight"] + m["delayed"]

    def _attributes(self):  # in the executor
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
        return self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names).get("Attributes") or {}

    def is_healthy(self):
        """Running, and the last receives did not all fail."""
        return not self._stopped and self._receive_failures < UNHEALTHY_AFTER

    async def stop(self):
        if self._stopped:
            return
        self._stopped = True
        if self._stop_signal is not None and not self._stop_signal.done():
            self._stop_signal.set_result(None)
        receiving = self._receiving
        if receiving is not None and receiving.done():  # ended, and its poll was cancelled
            self._receiving = None
            self._give_back(receiving)
        if self._lane is not None:
            self._lane.close()


def _chunks(prepared):
    """Runs of at most ten entries whose bodies stay within a batch request's size limit."""
    chunk, size = [], 0
    for item in prepared:
        n = len(item[1]["MessageBody"].encode())
        if chunk and (len(chunk) == MAX_BATCH or size + n > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk


def _sqs_token(value):
    """A MessageGroupId / MessageDeduplicationId: SQS takes 1–128 printable ASCII characters
    without spaces; anything else is replaced by its SHA-256 (the same value, the same token)."""
    if 0 < len(value) <= 128 and all("!" <= c <= "~" for c in value):
        return value
    return "sha256-" + hashlib.sha256(value.encode()).hexdigest()


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _warn_on_endpoint_mismatch(queue_url, client):
    """A queue on a local server reached through the AWS endpoint fails confusingly: say why."""
    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None) or ""
    if is_sqs_url(endpoint) and not is_sqs_url(queue_url):
        _log.warn("queue URL is not on the SQS endpoint: set AWS_ENDPOINT_URL_SQS", queueUrl=queue_url, endpoint=endpoint)


class _Poison:
    """The message of a poison dead letter: the SQS MessageId and the body's first bytes."""

    __slots__ = ("id", "payload")

    def __init__(self, broker_id, payload):
        self.id = broker_id
        self.payload = payload

    def to_dict(self):
        try:
            return {"id": self.id, "raw": jsoncodec.loads(self.payload)}
        except (ValueError, TypeError):
            return {"id": self.id, "raw": self.payload}
