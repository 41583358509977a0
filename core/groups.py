"""Message-group state of a pool: who is next in each group (router spec §3.3–§3.5). Pure:
no event loop, no IO.

Theory of operation: a group exists while it has work. `push` adds a message to its group's
high-priority or regular lane and answers True when the group was idle, i.e. the caller must
start the group's one drain task. The drain task calls `pop` until it answers None, at which
point the group is gone (so at most one message per group is ever in delivery). High-priority
messages go first; within a lane, arrival order.

Cascade (BLOCK_ON_ERROR only): when a message fails, `hold(group, batch)` marks its poll batch
in that group, and the remaining messages of the same batch and group are set aside without
delivery (`pop` returns them with `held=True`) so none of them overtakes the failed one. The
mark ends when the last queued message of that batch and group has been popped, or with the
group.
"""

from .fifo import Fifo


class _Group:
    __slots__ = ("high", "regular", "batch_counts", "held_batches")

    def __init__(self):
        self.high = Fifo()
        self.regular = Fifo()
        self.batch_counts = {}
        self.held_batches = {}


class MessageGroups:
    def __init__(self):
        self._groups = {}

    def __len__(self):
        return len(self._groups)

    def __contains__(self, key):
        return key in self._groups

    def queued(self, key):
        g = self._groups.get(key)
        return len(g.high) + len(g.regular) if g else 0

    def push(self, key, item, batch_id, high_priority=False):
        """Queue `item` (which must have a `batch_id` attribute); True if a drain must start."""
        g = self._groups.get(key)
        start = g is None
        if start:
            g = self._groups[key] = _Group()
        (g.high if high_priority else g.regular).append(item)
        g.batch_counts[batch_id] = g.batch_counts.get(batch_id, 0) + 1
        return start

    def pop(self, key):
        """(item, held) for the next message of the group, or (None, False) when the group has
        no more work (and is then forgotten)."""
        g = self._groups.get(key)
        if g is None:
            return None, False
        lane = g.high if g.high else g.regular
        if not lane:
            del self._groups[key]
            return None, False
        item = lane.popleft()
        batch = item.batch_id
        held = batch in g.held_batches
        left = g.batch_counts[batch] - 1
        if left:
            g.batch_counts[batch] = left
        else:
            del g.batch_counts[batch]
            g.held_batches.pop(batch, None)
        return item, held

    def hold(self, key, batch_id):
        """Hold the rest of `batch_id` in this group (a BLOCK_ON_ERROR message failed)."""
        g = self._groups.get(key)
        if g is not None and batch_id in g.batch_counts:
            g.held_batches[batch_id] = True

    def take_all(self, key):
        """Remove the group and return every item still queued in it (abnormal exit)."""
        g = self._groups.pop(key, None)
        if g is None:
            return []
        return list(g.high) + list(g.regular)
