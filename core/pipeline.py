"""In-pipeline tracking: which queue messages are being worked on, and deduplication of the
copies a broker hands us again (router spec §3.2 phase 0–1, §3.6–§3.7). Pure bookkeeping.

Every routed message is tracked under its pipeline key (the broker message id, or
`fallback:<queue>:<id>` without one) and indexed by its application id. A new copy is:

  REDELIVERY  same broker id already tracked (its visibility expired while we still work on
              it): keep the newest receipt handle for the final ack, drop the copy;
  REQUEUE     same application id under another pipeline key (re-published while in flight,
              or the same id arriving from another queue): delete the copy, leave the
              original alone (its receipt handle belongs to its own queue);
  NEW         anything else.

Two copies of one id in the same poll batch are caught too (the first is tracked before the
second is checked), unlike the Rust router (spec §13 item 27).

`pending_delete` remembers broker ids whose ack call failed, so the next delivery of that
message is deleted at once instead of being processed again.
"""

NEW = "NEW"
REDELIVERY = "REDELIVERY"
REQUEUE = "REQUEUE"


class InFlight:
    __slots__ = (
        "key",
        "message_id",
        "broker_message_id",
        "receipt_handle",
        "queue_identifier",
        "pool_code",
        "group",
        "batch_id",
        "started_at",
        "last_seen",
        "wall_started_at",
    )

    def __init__(self, key, queued, pool_code, batch_id, now, wall_now):
        self.key = key
        self.message_id = queued.message.id
        self.broker_message_id = queued.broker_message_id
        self.receipt_handle = queued.receipt_handle
        self.queue_identifier = queued.queue_identifier
        self.pool_code = pool_code
        self.group = queued.message.message_group_id
        self.batch_id = batch_id
        self.started_at = now
        self.last_seen = now
        self.wall_started_at = wall_now


def pipeline_key(queued):
    return queued.broker_message_id or "fallback:%s:%s" % (queued.queue_identifier, queued.message.id)


class Pipeline:
    def __init__(self):
        self.entries = {}  # pipeline key -> InFlight
        self.by_message_id = {}  # application message id -> pipeline key
        self.pending_delete = {}  # broker message id -> time the ack failed

    def __len__(self):
        return len(self.entries)

    def check(self, queued, now):
        """Classify a received copy; a REDELIVERY's receipt handle is swapped in here."""
        broker_id = queued.broker_message_id
        entry = self.entries.get(broker_id) if broker_id else None
        if entry is not None:
            if entry.queue_identifier != queued.queue_identifier:
                return REQUEUE  # the same broker id on another queue: its handle is not ours
            entry.receipt_handle = queued.receipt_handle
            entry.last_seen = now
            return REDELIVERY
        key = self.by_message_id.get(queued.message.id)
        if key is None:
            return NEW
        if pipeline_key(queued) != key:
            return REQUEUE  # another broker id, or (without one) another queue
        entry = self.entries.get(key)
        if entry is None:
            return NEW
        entry.receipt_handle = queued.receipt_handle
        entry.last_seen = now
        return REDELIVERY

    def track(self, queued, pool_code, batch_id, now, wall_now):
        key = pipeline_key(queued)
        self.entries[key] = InFlight(key, queued, pool_code, batch_id, now, wall_now)
        self.by_message_id[queued.message.id] = key
        return key

    def receipt_handle(self, key):
        entry = self.entries.get(key)
        return entry.receipt_handle if entry else None

    def release(self, key):
        entry = self.entries.pop(key, None)
        if entry is not None and self.by_message_id.get(entry.message_id) == key:
            del self.by_message_id[entry.message_id]
        return entry

    def reap(self, now, max_age):
        """Forget entries not seen for `max_age` seconds (a callback that never resolved);
        their messages come back after their visibility timeout. Returns them."""
        stale = [e for e in self.entries.values() if now - e.last_seen >= max_age]
        for e in stale:
            self.release(e.key)
        return stale

    def remember_failed_ack(self, broker_id, now):
        self.pending_delete[broker_id] = now

    def take_pending_delete(self, broker_id):
        return self.pending_delete.pop(broker_id, None) is not None

    def expire_pending_deletes(self, now, ttl):
        old = [b for b, t in self.pending_delete.items() if now - t >= ttl]
        for b in old:
            del self.pending_delete[b]
        return len(old)
