"""An in-memory queue with SQS-FIFO semantics: the queue a device uses, and the reference for
the other local queues. It is both a QueueConsumer and a QueuePublisher (ports.py).

Theory of operation. Messages keep their publish order (`seq`). Ordered messages
(NEXT_ON_ERROR, BLOCK_ON_ERROR) wait in a line per message group; IMMEDIATE messages stand
alone. A message is claimable when it is visible, not in flight and — if it is in a line — at
the head of a line that has nothing in flight. A poll claims the oldest claimable messages
and, after a line's head, the visible messages behind it, in order (as SQS returns several
messages of one group). Claiming makes a message invisible for the visibility timeout and
counts a receive. Then:

  event                 what happens to the message              and to its group's line
  ack                   deleted                                  next message may go
  nack(delay)           visible again after delay; a message     BLOCK_ON_ERROR: waits for it
                        received max_receive_count times is       NEXT_ON_ERROR: set aside
                        dead-lettered instead                     until its delay ends, so
                                                                 the rest of the group goes on
  defer(delay)          as nack, but the receive is not counted  waits for it (order kept)
  visibility expires    visible again (a receive was counted)    waits for it
  extend_visibility     stays invisible longer                   —

A message about to be received for the (max_receive_count + 1)-th time is dead-lettered with
its last error, and its group continues. Publishing the same deduplication id (default: the
message id) within `dedup_window` seconds is accepted as a duplicate and stored once. Polls
wait up to `wait_seconds` and return as soon as a message becomes claimable.
"""

import asyncio
from heapq import heapify, heappop, heappush

from .compat import monotonic, wall_time, with_timeout
from .fifo import Fifo
from .log import logger
from .message import NEXT_ON_ERROR, parse_message
from .ports import ConsumerStopped, PublishResult, QueuedMessage, ReceiptHandleError

_EXPIRE = 0  # an in-flight message's visibility timeout ends
_VISIBLE = 1  # a delayed message (or a line's delayed head) becomes visible
_RETURN = 2  # a set-aside NEXT_ON_ERROR message rejoins its line

_log = logger("memqueue")


class QueueFull(Exception):
    pass


class DeadLetter:
    __slots__ = ("message", "reason", "receive_count", "dead_at", "queue")

    def __init__(self, message, reason, receive_count, dead_at, queue):
        self.message = message
        self.reason = reason
        self.receive_count = receive_count
        self.dead_at = dead_at
        self.queue = queue

    def to_dict(self):
        return {
            "messageId": self.message.id,
            "queue": self.queue,
            "reason": self.reason,
            "receiveCount": self.receive_count,
            "deadAt": self.dead_at,
            "message": self.message.to_dict(),
        }


class _Entry:
    __slots__ = ("seq", "message", "group", "visible_at", "receive_count", "handle", "deleted", "set_aside", "last_error", "published_at")

    def __init__(self, seq, message, now):
        self.seq = seq
        self.message = message
        self.group = message.group if message.ordered else None
        self.visible_at = now
        self.receive_count = 0
        self.handle = None
        self.deleted = False
        self.set_aside = False
        self.last_error = None
        self.published_at = now


class _Line:
    __slots__ = ("entries", "in_flight")

    def __init__(self):
        self.entries = Fifo()
        self.in_flight = 0


def _seq_of(entry):
    return entry.seq


class MemoryQueue:
    wakes_on_publish = True

    def __init__(
        self,
        name,
        visibility_timeout=120,
        max_receive_count=10,
        dedup_window=300,
        wait_seconds=20,
        max_messages=None,
        max_dead_letters=1000,
        clock=monotonic,
    ):
        self.identifier = name
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.dedup_window = dedup_window
        self.wait_seconds = wait_seconds
        self.max_messages = max_messages
        self.max_dead_letters = max_dead_letters
        self.clock = clock
        self.dead_letters = []
        self.dead_lettered_total = 0
        self.on_dead_letter = None  # optional callback(DeadLetter)
        self.counters = {"published": 0, "duplicates": 0, "received": 0, "acked": 0, "nacked": 0, "deferred": 0, "dead_lettered": 0}
        self._seq = 0
        self._tie = 0
        self._receipts = 0  # numbers receipt handles: each receive gets a new one
        self._live = {}  # seq -> entry
        self._lines = {}  # group -> _Line
        self._ready = []  # heap of (seq, entry): candidates to claim
        self._timers = []  # heap of (due, tie, kind, entry, token)
        self._handles = {}
        self._dedup = {}
        self._dedup_order = Fifo()
        self._wakeup = asyncio.Event()
        self._stopped = False

    def __len__(self):
        return len(self._live)

    # -- publishing -----------------------------------------------------------------------------

    async def publish(self, message, dedup_id=None):
        return self.put(message, dedup_id)

    async def publish_batch(self, items):
        """Publish (message, dedup_id) pairs; one PublishResult each. Every pointer is parsed
        first, so an invalid one (MessageError) stores nothing."""
        parsed = [(m if hasattr(m, "mediation_target") else parse_message(m), d) for m, d in items]
        return [self.put(m, d) for m, d in parsed]

    def put(self, message, dedup_id=None):
        """Publish without awaiting. `message` is a Message or a pointer (dict, JSON text or
        bytes: parsed, MessageError if invalid). Raises QueueFull at `max_messages`."""
        if not hasattr(message, "mediation_target"):
            message = parse_message(message)
        now = self.clock()
        key = dedup_id or message.id
        if self.dedup_window:
            self._expire_dedup(now)
            if key in self._dedup:
                self.counters["duplicates"] += 1
                return PublishResult(message.id, PublishResult.DUPLICATE)
        if self.max_messages is not None and len(self._live) >= self.max_messages:
            raise QueueFull("queue %s is full (%d messages)" % (self.identifier, self.max_messages))
        if self.dedup_window:
            self._dedup[key] = now + self.dedup_window
            self._dedup_order.append((now + self.dedup_window, key))
        self._add(message, now)
        self.counters["published"] += 1
        return PublishResult(message.id, PublishResult.ACCEPTED)

    def _add(self, message, now):
        self._seq += 1
        entry = _Entry(self._seq, message, now)
        self._live[entry.seq] = entry
        if entry.group is None:
            heappush(self._ready, (entry.seq, entry))
        else:
            line = self._line(entry.group)
            line.entries.append(entry)
            if line.entries.peek() is entry:  # only a new head changes what can be claimed
                self._refresh_line(entry.group, now)
        self._wakeup.set()
        return entry

    def _expire_dedup(self, now):
        order = self._dedup_order
        while order and order.peek()[0] <= now:
            expiry, key = order.popleft()
            if self._dedup.get(key) == expiry:
                del self._dedup[key]

    # -- consuming ------------------------------------------------------------------------------

    async def poll(self, max_messages=10, wait=None):
        if max_messages < 1:
            return []
        wait = self.wait_seconds if wait is None else wait
        deadline = self.clock() + wait
        while True:
            if self._stopped:
                raise ConsumerStopped("queue %s is stopped" % self.identifier)
            now = self.clock()
            self._run_timers(now)
            batch = self._claim(max_messages, now)
            if batch or now >= deadline:
                return batch
            timeout = deadline - now
            if self._timers:
                timeout = min(timeout, self._timers[0][0] - now)
            self._wakeup.clear()
            try:
                await with_timeout(self._wakeup.wait(), max(timeout, 0.001))
            except asyncio.TimeoutError:
                pass

    def _claimable(self, e, now):
        if e.deleted or e.handle is not None or e.set_aside or e.visible_at > now:
            return False
        if e.group is None:
            return True
        line = self._lines.get(e.group)
        return line is not None and line.in_flight == 0 and line.entries.peek() is e

    def _claim(self, limit, now):
        out = []
        ready = self._ready
        while ready and len(out) < limit:
            e = heappop(ready)[1]
            if not self._claimable(e, now):
                continue
            if e.receive_count >= self.max_receive_count:
                self._dead_letter(e, "received %d times without success; last error: %s" % (e.receive_count, e.last_error or "none"), now)
                continue
            if e.group is None:
                out.append(self._receive(e, now))
                continue
            follow = []
            for x in self._lines[e.group].entries:
                if len(out) + len(follow) >= limit:
                    break
                if x.handle is not None or x.visible_at > now or x.receive_count >= self.max_receive_count:
                    break
                follow.append(x)
            for x in follow:
                out.append(self._receive(x, now))
        if out:
            self.counters["received"] += len(out)
        return out

    def _receive(self, e, now):
        e.receive_count += 1
        self._receipts += 1
        e.handle = "%s:%d:%d" % (self.identifier, e.seq, self._receipts)
        e.visible_at = now + self.visibility_timeout
        self._handles[e.handle] = e
        if e.group is not None:
            self._lines[e.group].in_flight += 1
        self._timer(e.visible_at, _EXPIRE, e, e.handle)
        return QueuedMessage(e.message, e.handle, "%s:%d" % (self.identifier, e.seq), self.identifier, e.receive_count)

    async def ack(self, handle):
        e = self._take(handle)
        self.counters["acked"] += 1
        self._remove(e, self.clock())

    async def nack(self, handle, delay=None, reason=None):
        e = self._take(handle)
        self.counters["nacked"] += 1
        if reason:
            e.last_error = reason
        now = self.clock()
        if e.receive_count >= self.max_receive_count:
            self._dead_letter(e, "failed %d times; last error: %s" % (e.receive_count, e.last_error or "none"), now)
            return
        set_aside = e.group is not None and e.message.dispatch_mode == NEXT_ON_ERROR
        self._release(e, now, delay, set_aside)

    async def defer(self, handle, delay=None):
        e = self._take(handle)
        self.counters["deferred"] += 1
        e.receive_count -= 1  # not an attempt: it must not bring the message nearer its dead letter
        self._release(e, self.clock(), delay, False)

    async def extend_visibility(self, handle, seconds):
        e = self._handles.get(handle)
        if e is None:
            raise ReceiptHandleError("unknown or expired receipt handle %r" % handle)
        e.visible_at = self.clock() + seconds
        self._timer(e.visible_at, _EXPIRE, e, handle)

    def _take(self, handle):
        e = self._handles.pop(handle, None)
        if e is None:
            raise ReceiptHandleError("unknown or expired receipt handle %r" % handle)
        self._land(e)
        return e

    def _land(self, e):
        """`e` is no longer in flight (answered, or its visibility expired)."""
        e.handle = None
        if e.group is not None:
            self._lines[e.group].in_flight -= 1

    def _release(self, e, now, delay, set_aside):
        """An in-flight message goes back to waiting, visible after `delay` seconds."""
        e.visible_at = now + (delay or 0)
        if e.group is None:
            self._when_visible(e, _VISIBLE, now)
            return
        if set_aside:
            self._lines[e.group].entries.remove(e)
            e.set_aside = True
            self._when_visible(e, _RETURN, now)
        self._refresh_line(e.group, now)

    def _remove(self, e, now):
        e.deleted = True
        del self._live[e.seq]
        if e.group is None:
            return
        if not e.set_aside:
            self._lines[e.group].entries.remove(e)
        self._refresh_line(e.group, now)

    def _line(self, group):
        line = self._lines.get(group)
        if line is None:
            line = self._lines[group] = _Line()
        return line

    def _refresh_line(self, group, now):
        """After any change to a line: make its head claimable, or drop an empty line."""
        line = self._lines.get(group)
        if line is None or line.in_flight:
            return
        head = line.entries.peek()
        if head is None:
            del self._lines[group]
        else:
            self._when_visible(head, _VISIBLE, now)

    def _when_visible(self, e, kind, now):
        if kind == _VISIBLE and e.visible_at <= now:
            heappush(self._ready, (e.seq, e))
            self._wakeup.set()
        else:
            self._timer(e.visible_at, kind, e, None)

    def _timer(self, due, kind, e, token):
        self._tie += 1
        timers = self._timers
        if len(timers) > 2 * len(self._live) + 256:
            # Timers outlive their purpose (an acked message's visibility timer stays until
            # it is due): drop the stale ones so memory follows the queue, not its history.
            timers = self._timers = [t for t in timers if self._timer_matters(t)]
            heapify(timers)
        heappush(timers, (due, self._tie, kind, e, token))
        if timers[0][1] == self._tie:
            self._wakeup.set()  # now the earliest timer: a waiting poll must shorten its wait

    def _timer_matters(self, timer):
        kind, e, token = timer[2:]
        if e.deleted:
            return False
        if kind == _EXPIRE:
            return e.handle == token
        if kind == _RETURN:
            return e.set_aside
        return e.handle is None and not e.set_aside

    def _run_timers(self, now):
        timers = self._timers
        while timers and timers[0][0] <= now:
            kind, e, token = heappop(timers)[2:]
            if e.deleted:
                continue
            if kind == _EXPIRE:
                if e.handle == token and e.visible_at <= now:
                    del self._handles[token]
                    self._land(e)
                    e.last_error = "visibility timeout expired"
                    self._release(e, now, 0, False)
            elif kind == _RETURN:
                if e.set_aside:
                    e.set_aside = False
                    self._line(e.group).entries.insert_ordered(e, _seq_of)
                    self._refresh_line(e.group, now)
            elif e.handle is None and not e.set_aside:
                if e.group is None:
                    heappush(self._ready, (e.seq, e))
                else:
                    self._refresh_line(e.group, now)

    # -- dead letters ---------------------------------------------------------------------------

    def _dead_letter(self, e, reason, now):
        dead = DeadLetter(e.message, reason, e.receive_count, wall_time(), self.identifier)
        self._remove(e, now)
        self.dead_lettered_total += 1
        self.counters["dead_lettered"] += 1
        if len(self.dead_letters) >= self.max_dead_letters:
            del self.dead_letters[0]
        self.dead_letters.append(dead)
        _log.error("message dead-lettered", queue=self.identifier, messageId=e.message.id, group=e.message.message_group_id, reason=reason)
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(dead)
            except Exception as error:  # a listener's bug must not abort the poll
                _log.error("on_dead_letter callback failed", queue=self.identifier, error=repr(error))

    async def list_dead_letters(self, limit=100, offset=0):
        return self.dead_letters[offset : offset + limit]

    async def replay_dead_letters(self, message_ids=None):
        """Put dead letters (all, or those with these ids) back on the queue with a fresh
        receive count; returns how many."""
        keep, replay = [], []
        for dead in self.dead_letters:
            (replay if message_ids is None or dead.message.id in message_ids else keep).append(dead)
        self.dead_letters = keep
        now = self.clock()
        for dead in replay:
            self._add(dead.message, now)
        return len(replay)

    async def delete_dead_letters(self, message_ids=None):
        before = len(self.dead_letters)
        self.dead_letters = [] if message_ids is None else [d for d in self.dead_letters if d.message.id not in message_ids]
        return before - len(self.dead_letters)

    # -- the rest of the port ---------------------------------------------------------------------

    async def size(self):
        """Messages in the queue (in flight and delayed included)."""
        return len(self._live)

    def is_healthy(self):
        return not self._stopped

    async def stop(self):
        self._stopped = True
        self._wakeup.set()

    async def metrics(self):
        now = self.clock()
        self._run_timers(now)  # count expired visibility and ended set-asides as what they are
        pending = delayed = 0
        oldest = None
        for e in self._live.values():
            if e.handle is not None:
                continue
            if e.visible_at > now or e.set_aside:
                delayed += 1
                continue
            pending += 1
            if oldest is None or e.published_at < oldest:
                oldest = e.published_at
        return {
            "pending": pending,
            "in_flight": len(self._handles),
            "delayed": delayed,
            "dead_lettered": self.dead_lettered_total,
            "oldest_pending_age": round(now - oldest, 3) if oldest is not None else 0.0,
        }
