"""A durable queue in SQLite with the semantics of the core's MemoryQueue (see its theory of
operation), as a QueueConsumer and QueuePublisher of the core (flowcatalyst/core/ports.py).

Rows of `queue_messages` are messages in publish order (`seq`). Ordered messages wait in a
line per group (`group_key`); `queue_groups` keeps each line's head and how many of the
group's messages are in flight, so a claim never scans the backlog:

  claimable  an IMMEDIATE row that is visible and not in flight, or the head of a line with
             nothing in flight whose head is visible; after a head, the visible rows behind
             it are claimed too, in order
  ack        deletes the row; the line's next row becomes its head
  nack       visible again after the delay; a BLOCK_ON_ERROR row stays at the head of its
             line (the group waits), a NEXT_ON_ERROR row is set aside and rejoins its line
             at its place when the delay ends; a row nacked on its last allowed receive
             goes to `queue_dead_letters` with the reason
  defer      like nack but not counted as a receive, and never set aside
  expiry     an in-flight row whose visibility ended is visible again (a receive counted)

A row about to be received more than `max_receive_count` times, and a row whose payload is
not a valid pointer, is dead-lettered instead of delivered; nothing poisons a poll. Times are
unix milliseconds, so visibility survives restarts; at start-up (the first queue object of a
name on a newly opened store) rows left in flight by a process that died are released at once.
Later objects of that name share the rows, receipt handles included.
"""

import asyncio

from flowcatalyst.core import jsoncodec
from flowcatalyst.core.compat import uuid4, wall_time, with_timeout
from flowcatalyst.core.log import logger
from flowcatalyst.core.memqueue import DeadLetter
from flowcatalyst.core.message import NEXT_ON_ERROR, MessageError, parse_message
from flowcatalyst.core.ports import (
    ConsumerStopped,
    PublishResult,
    QueuedMessage,
    ReceiptHandleError,
)

_log = logger("sqlitequeue")

# How long a poll may sleep without looking at the database: covers delays ending for rows it
# did not see change (another queue object on the same file, a clock step).
MAX_POLL_SLEEP = 1.0


class SqliteQueue:
    wakes_on_publish = True

    def __init__(self, store, name, visibility_timeout=120, max_receive_count=10, dedup_window=300, wait_seconds=20, clock=wall_time):
        self.store = store
        self.clock = clock  # wall-clock seconds: times are stored, so they must survive restarts
        self.identifier = name
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.dedup_window = dedup_window
        self.wait_seconds = wait_seconds
        self.counters = {"published": 0, "duplicates": 0, "received": 0, "acked": 0, "nacked": 0, "deferred": 0, "dead_lettered": 0}
        self._wakeup = asyncio.Event()
        self._next_due = None  # earliest known time (ms) something may become claimable
        self._acks = None  # receipt handles acked in this event-loop turn (see ack)
        self._acks_done = None
        self._stopped = False
        self._background = set()  # give-backs of cancelled polls
        self.on_dead_letter = None

    def _now_ms(self):
        return _ms(self.clock())

    # -- publishing -----------------------------------------------------------------------------

    async def publish(self, message, dedup_id=None):
        return (await self.publish_batch([(message, dedup_id)]))[0]

    async def publish_batch(self, items):
        """Publish (message, dedup_id) pairs in one transaction; a message may be a Message or
        a pointer (parsed here: MessageError before anything is stored). Returns one
        PublishResult per item, after the commit."""
        messages = []
        for message, dedup_id in items:
            if not hasattr(message, "mediation_target"):
                message = parse_message(message)
            messages.append((message, dedup_id))
        results = await self.store.write(self._publish, messages, self._now_ms())
        accepted = sum(1 for r in results if r.accepted)
        self.counters["published"] += accepted
        self.counters["duplicates"] += len(results) - accepted
        if accepted:
            self._wake(0)
        return results

    def _publish(self, db, messages, now):
        results = []
        q = self.identifier
        window = _ms(self.dedup_window)
        if window:  # forget expired deduplication ids (the index on expires_at finds them)
            db.execute("DELETE FROM queue_dedup WHERE expires_at <= ? AND queue_name = ?", (now, q))
        for message, dedup_id in messages:
            key = dedup_id or message.id
            if window:
                row = db.execute("SELECT expires_at FROM queue_dedup WHERE queue_name = ? AND dedup_id = ?", (q, key)).fetchone()
                if row is not None and row[0] > now:
                    results.append(PublishResult(message.id, PublishResult.DUPLICATE))
                    continue
            group = message.group if message.ordered else None
            cur = db.execute(
                "INSERT INTO queue_messages (id, queue_name, message_group_id, group_key, next_on_error, visible_at, payload, created_at, dedup_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (queue_name, id) DO NOTHING",
                (message.id, q, message.message_group_id, group, 1 if message.dispatch_mode == NEXT_ON_ERROR else 0, now, message.to_json(), now, dedup_id),
            )
            if not cur.rowcount:  # the same id is still in the queue
                results.append(PublishResult(message.id, PublishResult.DUPLICATE))
                continue
            if window:
                db.execute("INSERT OR REPLACE INTO queue_dedup (queue_name, dedup_id, expires_at) VALUES (?, ?, ?)", (q, key, now + window))
            if group is not None:
                db.execute(
                    "INSERT INTO queue_groups (queue_name, group_key, head_seq) VALUES (?, ?, ?) "
                    "ON CONFLICT (queue_name, group_key) DO UPDATE SET head_seq = COALESCE(head_seq, excluded.head_seq)",
                    (q, group, cur.lastrowid),
                )
            results.append(PublishResult(message.id, PublishResult.ACCEPTED))
        return results

    # -- consuming ------------------------------------------------------------------------------

    async def poll(self, max_messages=10, wait=None):
        if max_messages < 1:
            return []
        wait = self.wait_seconds if wait is None else wait
        deadline = self._now_ms() + _ms(wait)
        while True:
            if self._stopped:
                raise ConsumerStopped("queue %s is stopped" % self.identifier)
            batch, next_due, dead = await self._claim_committed(max_messages)
            for letter in dead:
                self._dead_lettered(letter)
            if batch:
                self.counters["received"] += len(batch)
                return batch
            now = self._now_ms()
            if now >= deadline:
                return []
            self._note_due(next_due)
            sleep_ms = deadline - now
            if self._next_due is not None:
                sleep_ms = min(sleep_ms, max(self._next_due - now, 1))
            self._wakeup.clear()
            try:
                await with_timeout(self._wakeup.wait(), min(sleep_ms / 1000, MAX_POLL_SLEEP))
            except asyncio.TimeoutError:
                pass
            if self._next_due is not None and self._next_due <= self._now_ms():
                self._next_due = None

    async def _claim_committed(self, limit):
        """Claim in the store's transaction. A poll cancelled while the claim commits (the
        router cancels a poll loop it stops) would leave the claimed rows invisible for a
        visibility timeout with nobody to deliver them: they are given back instead."""
        claims = []

        def claim(db, limit, now):
            claims.append(self._claim(db, limit, now))
            return claims[-1]

        try:
            return await self.store.write(claim, limit, self._now_ms())
        except asyncio.CancelledError:
            if claims:
                task = asyncio.ensure_future(self._give_back(*claims[0]))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            raise

    async def _give_back(self, batch, next_due, dead):
        def give_back(db, now):
            for queued in batch:
                try:
                    self._defer(db, queued.receipt_handle, 0, now)  # as if never received
                except ReceiptHandleError:
                    pass  # the claim's commit failed: nothing to give back
            return len(batch)

        try:
            if batch:
                await self.store.write(give_back, self._now_ms())
                self._wakeup.set()
            for letter in dead:
                self._dead_lettered(letter)
        except Exception as e:  # the store closed meanwhile: the next start releases them
            _log.warn("could not give back the messages of a cancelled poll", queue=self.identifier, count=len(batch), error=repr(e))

    def _claim(self, db, limit, now):
        """Claim up to `limit` rows. Returns the messages, when something may become claimable
        (if nothing was), and the dead letters made on the way (for on_dead_letter)."""
        self._expire(db, now)
        self._return_set_aside(db, now)
        out, dead, claims = [], [], []  # claims: (handle, visible_at, seq) not yet written
        while len(out) < limit:
            picked = self._candidates(db, limit - len(out), now)
            if not picked:
                break
            for row in picked:
                if row[1] is None:
                    self._receive(db, row, None, now, out, dead, claims)
                else:
                    self._claim_line(db, row, limit - len(out), now, out, dead, claims)
                if len(out) >= limit:
                    break
            if claims:  # before looking for candidates again: these are taken
                db.executemany("UPDATE queue_messages SET receipt_handle = ?, visible_at = ?, receive_count = receive_count + 1 WHERE seq = ?", claims)
                del claims[:]
        next_due = None if out else self._next_due_in(db, now)
        return out, next_due, dead

    def _next_due_in(self, db, now):
        """When something may become claimable: the earliest end of an in-flight visibility, of
        a set-aside delay, of a waiting line head's delay, or of an IMMEDIATE row's delay. Each
        comes from an index that exists for the claim anyway (a general visible_at index would
        cost every claim and answer more than this asks)."""
        q = self.identifier
        row = db.execute(
            "SELECT MIN(due) FROM ("
            " SELECT MIN(visible_at) AS due FROM queue_messages INDEXED BY idx_qm_in_flight WHERE queue_name = ?1 AND receipt_handle IS NOT NULL"
            " UNION ALL SELECT MIN(visible_at) FROM queue_messages INDEXED BY idx_qm_aside WHERE queue_name = ?1 AND set_aside = 1"
            " UNION ALL SELECT MIN(m.visible_at) FROM queue_groups g JOIN queue_messages m ON m.seq = g.head_seq"
            "   WHERE g.queue_name = ?1 AND g.in_flight = 0 AND g.head_seq IS NOT NULL AND m.visible_at > ?2"
            " UNION ALL SELECT MIN(visible_at) FROM queue_messages INDEXED BY idx_qm_free"
            "   WHERE queue_name = ?1 AND group_key IS NULL AND receipt_handle IS NULL AND visible_at > ?2)",
            (q, now),
        ).fetchone()
        return row[0]

    _ROW = "m.seq, m.group_key, m.id, m.payload, m.receive_count, m.last_error"

    def _candidates(self, db, limit, now):
        """The oldest claimable IMMEDIATE rows and line heads, as claim rows (_ROW)."""
        q = self.identifier
        free = db.execute(
            "SELECT %s FROM queue_messages m INDEXED BY idx_qm_free WHERE m.queue_name = ? AND m.group_key IS NULL AND m.receipt_handle IS NULL "
            "AND m.visible_at <= ? ORDER BY m.seq LIMIT ?" % self._ROW,
            (q, now, limit),
        ).fetchall()
        heads = db.execute(
            "SELECT %s FROM queue_groups g JOIN queue_messages m ON m.seq = g.head_seq "
            "WHERE g.queue_name = ? AND g.in_flight = 0 AND g.head_seq IS NOT NULL AND m.visible_at <= ? "
            "ORDER BY g.head_seq LIMIT ?" % self._ROW,
            (q, now, limit),
        ).fetchall()
        picked = free + heads
        picked.sort()
        return picked[:limit]

    def _claim_line(self, db, head, limit, now, out, dead, claims):
        """Claim a line's head and the visible rows right behind it, up to `limit`. A row with
        no receive left is dead-lettered while it is the head (the next row becomes the head);
        behind a claimed row it ends the run and waits to become the head (as MemoryQueue)."""
        group = head[1]
        claimed = 0
        for row in self._line_rows(db, group, head[0], limit):
            if row[6] > now or (claimed and row[4] >= self.max_receive_count) or claimed >= limit:
                break
            if self._receive(db, row, group, now, out, dead, claims):
                claimed += 1
        if claimed:
            db.execute("UPDATE queue_groups SET in_flight = in_flight + ? WHERE queue_name = ? AND group_key = ?", (claimed, self.identifier, group))

    def _line_rows(self, db, group, start, limit):
        """The line's rows from `start` on, in order, fetched `limit` at a time (a dead-lettered
        head does not count towards the limit, so more may be needed)."""
        while True:
            rows = db.execute(
                "SELECT %s, m.visible_at FROM queue_messages m WHERE m.queue_name = ? AND m.group_key = ? "
                "AND m.set_aside = 0 AND m.seq >= ? ORDER BY m.seq LIMIT ?" % self._ROW,
                (self.identifier, group, start, limit),
            ).fetchall()
            yield from rows
            if len(rows) < limit:
                return
            start = rows[-1][0] + 1

    def _receive(self, db, row, group, now, out, dead, claims):
        """Claim one row (its UPDATE joins `claims`), or dead-letter it (too many receives, or
        not a valid pointer). True if claimed."""
        seq, _, msg_id, payload, count, last_error = row[:6]
        if count >= self.max_receive_count:
            reason = "received %d times without success; last error: %s" % (count, last_error or "none")
            dead.append(self._dead_letter(db, seq, reason, now, False))
            return False
        try:
            message = parse_message(payload)
        except MessageError as e:
            dead.append(self._dead_letter(db, seq, "not a valid message pointer: %s" % e, now, False))
            return False
        handle = uuid4()
        claims.append((handle, now + _ms(self.visibility_timeout), seq))
        out.append(QueuedMessage(message, handle, "%s:%d" % (self.identifier, seq), self.identifier, count + 1))
        return True

    def _expire(self, db, now):
        """In-flight rows whose visibility ended are visible again (their receive counted)."""
        q = self.identifier
        expired = db.execute(
            "SELECT seq, group_key FROM queue_messages WHERE queue_name = ? AND receipt_handle IS NOT NULL AND visible_at <= ?",
            (q, now),
        ).fetchall()
        for seq, group in expired:
            db.execute("UPDATE queue_messages SET receipt_handle = NULL, last_error = 'visibility timeout expired' WHERE seq = ?", (seq,))
            if group is not None:
                db.execute("UPDATE queue_groups SET in_flight = in_flight - 1 WHERE queue_name = ? AND group_key = ?", (q, group))

    def _return_set_aside(self, db, now):
        """Set-aside NEXT_ON_ERROR rows whose delay ended rejoin their line at their place."""
        q = self.identifier
        back = db.execute(
            "SELECT seq, group_key FROM queue_messages WHERE queue_name = ? AND set_aside = 1 AND visible_at <= ?",
            (q, now),
        ).fetchall()
        for seq, group in back:
            db.execute("UPDATE queue_messages SET set_aside = 0 WHERE seq = ?", (seq,))
            db.execute(
                "INSERT INTO queue_groups (queue_name, group_key, head_seq) VALUES (?, ?, ?) "
                "ON CONFLICT (queue_name, group_key) DO UPDATE SET head_seq = MIN(COALESCE(head_seq, excluded.head_seq), excluded.head_seq)",
                (q, group, seq),
            )

    # -- answering ------------------------------------------------------------------------------

    async def ack(self, handle):
        """Acks of one event-loop turn are deleted together, just before the turn's commit."""
        if self._acks is None:
            self._acks = []
            self._acks_done = self.store.defer(self._ack_all, self._acks)
        self._acks.append(handle)
        missing = await self._acks_done
        if handle in missing:
            raise ReceiptHandleError("unknown or expired receipt handle %r" % handle)
        self.counters["acked"] += 1
        self._wakeup.set()  # the next message of its group may be claimable now

    async def nack(self, handle, delay=None, reason=None):
        dead = await self.store.write(self._nack, handle, delay, reason, self._now_ms())
        self.counters["nacked"] += 1
        self._wake(delay)
        if dead is not None:
            self._dead_lettered(dead)

    async def defer(self, handle, delay=None):
        await self.store.write(self._defer, handle, delay, self._now_ms())
        self.counters["deferred"] += 1
        self._wake(delay)

    async def extend_visibility(self, handle, seconds):
        def extend(db):
            row = self._in_flight(db, handle)
            db.execute("UPDATE queue_messages SET visible_at = ? WHERE seq = ?", (self._now_ms() + _ms(seconds), row[0]))

        await self.store.write(extend)

    def _in_flight(self, db, handle):
        row = db.execute(
            "SELECT seq, group_key, receive_count, next_on_error FROM queue_messages WHERE receipt_handle = ? AND queue_name = ?",
            (handle, self.identifier),
        ).fetchone()
        if row is None:
            raise ReceiptHandleError("unknown or expired receipt handle %r" % handle)
        return row

    def _ack_all(self, db, handles):
        """Delete the rows of these receipt handles; returns the handles that matched none."""
        self._acks = None  # acks from now on belong to the next transaction
        deleted = {}
        for start in range(0, len(handles), 500):  # within SQLite's variable limit
            chunk = handles[start : start + 500]
            rows = db.execute(
                "DELETE FROM queue_messages WHERE queue_name = ? AND receipt_handle IN (%s) RETURNING receipt_handle, group_key"
                % ",".join("?" * len(chunk)),
                [self.identifier] + chunk,
            ).fetchall()
            for handle, group in rows:
                deleted[handle] = group
        groups = {}
        for group in deleted.values():
            if group is not None:
                groups[group] = groups.get(group, 0) + 1
        for group, count in groups.items():
            self._landed(db, group, True, -count)
        return set(h for h in handles if h not in deleted)

    def _nack(self, db, handle, delay, reason, now):
        seq, group, count, next_on_error = self._in_flight(db, handle)
        if count >= self.max_receive_count:
            detail = reason or db.execute("SELECT last_error FROM queue_messages WHERE seq = ?", (seq,)).fetchone()[0]
            return self._dead_letter(db, seq, "failed %d times; last error: %s" % (count, detail or "none"), now, True)
        set_aside = 1 if group is not None and next_on_error else 0
        db.execute(
            "UPDATE queue_messages SET receipt_handle = NULL, visible_at = ?, last_error = COALESCE(?, last_error), set_aside = ? WHERE seq = ?",
            (now + _ms(delay or 0), reason, set_aside, seq),
        )
        if group is not None:
            self._landed(db, group, set_aside)
        return None

    def _defer(self, db, handle, delay, now):
        row = db.execute(
            "UPDATE queue_messages SET receipt_handle = NULL, visible_at = ?, receive_count = receive_count - 1 "
            "WHERE receipt_handle = ? AND queue_name = ? RETURNING group_key",
            (now + _ms(delay or 0), handle, self.identifier),
        ).fetchone()
        if row is None:
            raise ReceiptHandleError("unknown or expired receipt handle %r" % handle)
        if row[0] is not None:
            self._landed(db, row[0], False)

    _HEAD = "(SELECT MIN(seq) FROM queue_messages WHERE queue_name = ?1 AND group_key = ?2 AND set_aside = 0)"

    def _landed(self, db, group, left_line, in_flight_change=-1):
        """A row of `group` is no longer in flight (or, with in_flight_change=0, left the line
        without having been in flight); if it left the line, the head moves on. One UPDATE."""
        q = self.identifier
        if not left_line:
            db.execute("UPDATE queue_groups SET in_flight = in_flight + ?3 WHERE queue_name = ?1 AND group_key = ?2", (q, group, in_flight_change))
            return
        row = db.execute(
            "UPDATE queue_groups SET in_flight = in_flight + ?3, head_seq = %s WHERE queue_name = ?1 AND group_key = ?2 "
            "RETURNING head_seq, in_flight" % self._HEAD,
            (q, group, in_flight_change),
        ).fetchone()
        if row is not None and row[0] is None and row[1] <= 0:
            db.execute("DELETE FROM queue_groups WHERE queue_name = ? AND group_key = ?", (q, group))

    # -- dead letters ---------------------------------------------------------------------------

    def _dead_letter(self, db, seq, reason, now, in_flight):
        row = db.execute(
            "SELECT id, message_group_id, group_key, payload, receive_count, created_at FROM queue_messages WHERE seq = ?", (seq,)
        ).fetchone()
        msg_id, group_id, group, payload, count, created = row
        db.execute(
            "INSERT INTO queue_dead_letters (id, queue_name, message_group_id, payload, reason, receive_count, created_at, dead_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (msg_id, self.identifier, group_id, payload, reason, count, created, now),
        )
        db.execute("DELETE FROM queue_messages WHERE seq = ?", (seq,))
        if group is not None:
            self._landed(db, group, True, -1 if in_flight else 0)
        _log.error("message dead-lettered", queue=self.identifier, messageId=msg_id, group=group_id, reason=reason)
        return (msg_id, payload, reason, count, now)

    def _dead_lettered(self, dead):
        """After the commit: count a dead letter and tell the listener."""
        self.counters["dead_lettered"] += 1
        if self.on_dead_letter is None:
            return
        try:
            self.on_dead_letter(_dead_letter(self.identifier, *dead))
        except Exception as e:  # a listener's bug must not break the queue
            _log.error("on_dead_letter callback failed", queue=self.identifier, error=repr(e))

    async def list_dead_letters(self, limit=100, offset=0):
        rows = self.store.read(
            "SELECT id, payload, reason, receive_count, dead_at FROM queue_dead_letters WHERE queue_name = ? ORDER BY seq LIMIT ? OFFSET ?",
            (self.identifier, limit, offset),
        )
        return [_dead_letter(self.identifier, *r) for r in rows]

    async def replay_dead_letters(self, message_ids=None):
        """Put dead letters (all, or those with these ids) back on the queue, at its end, with
        a fresh receive count; returns how many (one whose id is queued again is kept)."""
        count = await self.store.write(self._replay, message_ids, self._now_ms())
        if count:
            self._wake(0)
        return count

    def _replay(self, db, message_ids, now):
        rows = db.execute("SELECT seq, id, payload FROM queue_dead_letters WHERE queue_name = ? ORDER BY seq", (self.identifier,)).fetchall()
        wanted = None if message_ids is None else set(message_ids)
        messages = []
        for seq, msg_id, payload in rows:
            if wanted is not None and msg_id not in wanted:
                continue
            try:
                message = parse_message(payload)
            except MessageError:
                continue  # a poison payload stays a dead letter
            published = self._publish(db, [(message, "replay:%s:%d" % (msg_id, seq))], now)[0]
            if published.accepted:
                db.execute("DELETE FROM queue_dead_letters WHERE seq = ?", (seq,))
                messages.append(msg_id)
        return len(messages)

    async def delete_dead_letters(self, message_ids=None):
        def delete(db):
            if message_ids is None:
                return db.execute("DELETE FROM queue_dead_letters WHERE queue_name = ?", (self.identifier,)).rowcount
            return sum(
                db.execute("DELETE FROM queue_dead_letters WHERE queue_name = ? AND id = ?", (self.identifier, i)).rowcount
                for i in set(message_ids)
            )

        return await self.store.write(delete)

    # -- the rest of the port ---------------------------------------------------------------------

    def _wake(self, delay):
        """Something may be claimable now (a publish, a group freed by an answer, a line with a
        new head) and the message answered may be after `delay`: a waiting poll looks again
        now, and keeps the delay's end in mind."""
        self._wakeup.set()
        if delay:
            self._note_due(self._now_ms() + _ms(delay))

    def _note_due(self, due):
        if due is not None and (self._next_due is None or due < self._next_due):
            self._next_due = due
            self._wakeup.set()  # a waiting poll shortens its sleep

    def is_healthy(self):
        return not self._stopped and not self.store.closed

    async def stop(self):
        self._stopped = True
        self._wakeup.set()

    async def metrics(self):
        q = self.identifier
        now = self._now_ms()
        pending, oldest = self.store.read(
            "SELECT COUNT(*), MIN(created_at) FROM queue_messages WHERE queue_name = ? AND visible_at <= ?",
            (q, now),
        )[0]
        in_flight = self.store.read(
            "SELECT COUNT(*) FROM queue_messages WHERE queue_name = ? AND receipt_handle IS NOT NULL AND visible_at > ?", (q, now)
        )[0][0]
        delayed = self.store.read(
            "SELECT COUNT(*) FROM queue_messages WHERE queue_name = ? AND receipt_handle IS NULL AND visible_at > ?", (q, now)
        )[0][0]
        dead = self.store.read("SELECT COUNT(*) FROM queue_dead_letters WHERE queue_name = ?", (q,))[0][0]
        return {
            "pending": pending,
            "in_flight": in_flight,
            "delayed": delayed,
            "dead_lettered": dead,
            "oldest_pending_age": round((now - oldest) / 1000, 3) if oldest is not None else 0.0,
        }

    async def size(self):
        return self.store.read("SELECT COUNT(*) FROM queue_messages WHERE queue_name = ?", (self.identifier,))[0][0]


def _ms(seconds):
    """Seconds as whole milliseconds, rounded: int() truncates (1.005 s would be 1004 ms, and a
    clock reading a hair below a millisecond would count as the one before)."""
    return int(round(seconds * 1000))


def _dead_letter(queue, msg_id, payload, reason, count, dead_at):
    try:
        message = parse_message(payload)
    except MessageError:
        message = _Unparsed(msg_id, payload)
    return DeadLetter(message, reason, count, dead_at / 1000, queue)


class _Unparsed:
    """A dead letter whose payload is not a valid pointer: shown as it was stored."""

    __slots__ = ("id", "payload")

    def __init__(self, msg_id, payload):
        self.id = msg_id
        self.payload = payload

    def to_dict(self):
        try:
            return {"id": self.id, "raw": jsoncodec.loads(self.payload)}
        except ValueError:
            return {"id": self.id, "raw": self.payload}
