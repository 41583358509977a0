"""Durability across SIGKILL, with real processes: messages published to a SQLite queue are
delivered by a worker process (durability_worker.py: a core Router over a SqliteQueue) to a
real HTTP target on loopback; the worker is killed with SIGKILL in the middle of a delivery and
started again on the same file. Every message must reach the target at least once, and no
BLOCK_ON_ERROR message may reach it before every earlier message of its group was delivered
successfully."""

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from flowcatalyst.edge.sqlitequeue import SqliteQueue
from flowcatalyst.edge.sqlstore import SqliteStore
from tests.support.engine import pointer

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "durability_worker.py")
QUEUE = "work"
GROUPS = 8
PER_GROUP = 15
IMMEDIATE = 80
HOLD = 0.03  # seconds the target takes to answer: deliveries overlap, and a kill lands in one


class Hook:
    """The target's handler: records each arrival in order; the first delivery of every
    fifth message of a group answers {"ack": false} (a failure the router retries)."""

    def __init__(self, fail_first):
        self.lock = threading.Lock()
        self.arrivals = []  # (message id, success, run)
        self.fail_first = set(fail_first)
        self.current = 0
        self.run = 1

    async def __call__(self, rec):
        mid = json.loads(rec.body)["messageId"]
        with self.lock:
            ok = mid not in self.fail_first
            self.fail_first.discard(mid)
            self.arrivals.append((mid, ok, self.run))
            self.current += 1
        try:
            await asyncio.sleep(HOLD)
        finally:
            with self.lock:
                self.current -= 1
        return 200, {}, {"ack": ok, "delaySeconds": 0}

    def successes(self):
        with self.lock:
            return {mid for mid, ok, _ in self.arrivals if ok}


def start_worker(db_path, log):
    return subprocess.Popen([sys.executable, WORKER, db_path, QUEUE], stdout=subprocess.PIPE, stderr=log, text=True)


def publish_all(db_path, url):
    messages, groups = [], {}
    for g in range(GROUPS):
        groups["grp%d" % g] = ["grp%d-%02d" % (g, i) for i in range(PER_GROUP)]
    immediate = ["imm-%03d" % i for i in range(IMMEDIATE)]
    # Interleaved as producers would: a few of each group, then some IMMEDIATE ones.
    for i in range(PER_GROUP):
        for g, ids in groups.items():
            messages.append(pointer(url, ids[i], group=g, mode="BLOCK_ON_ERROR"))
        for mid in immediate[i * IMMEDIATE // PER_GROUP : (i + 1) * IMMEDIATE // PER_GROUP]:
            messages.append(pointer(url, mid, group="imm", mode="IMMEDIATE"))

    async def publish():
        store = SqliteStore(db_path)
        try:
            q = SqliteQueue(store, QUEUE)
            for start in range(0, len(messages), 50):
                results = await q.publish_batch([(m, None) for m in messages[start : start + 50]])
                assert all(r.accepted for r in results)
        finally:
            store.close()

    asyncio.run(publish())
    return [m["id"] for m in messages], groups


def test_every_message_survives_a_sigkill_and_groups_keep_their_order(tmp_path, target):
    db_path = str(tmp_path / "edge.db")
    url = target.url("/hook")
    all_ids, groups = publish_all(db_path, url)
    assert len(all_ids) == GROUPS * PER_GROUP + IMMEDIATE == 200
    hook = Hook(ids[i] for ids in groups.values() for i in range(2, PER_GROUP, 5))
    target.on("/hook", hook)
    log_path = tmp_path / "worker.log"
    started = time.monotonic()

    with open(log_path, "w") as log:
        first = start_worker(db_path, log)
        try:
            deadline = time.monotonic() + 10
            while len(hook.arrivals) < 60 or hook.current == 0:  # well under way, mid-delivery
                assert first.poll() is None, "the worker ended early: %s" % log_path.read_text()[-2000:]
                assert time.monotonic() < deadline, "too few deliveries: %d" % len(hook.arrivals)
                time.sleep(0.001)
            os.kill(first.pid, signal.SIGKILL)
            with hook.lock:  # still being answered after the kill: never answered to the worker
                in_progress = [mid for mid, ok, run in hook.arrivals[-hook.current :]] if hook.current else []
                hook.run = 2
            first.wait(5)
        finally:
            if first.poll() is None:
                first.kill()
        assert first.returncode == -signal.SIGKILL
        first_run = hook.successes()
        assert len(first_run) < len(all_ids)  # killed long before the end
        assert in_progress, "the kill must land in the middle of a delivery"

        second = start_worker(db_path, log)
        try:
            out, _ = second.communicate(timeout=20)
        finally:
            if second.poll() is None:
                second.kill()
    assert second.returncode == 0 and "drained" in out, log_path.read_text()[-3000:]
    elapsed = time.monotonic() - started

    # Nothing lost: every message was delivered successfully at least once, and the queue is
    # empty with no dead letters.
    delivered = hook.successes()
    assert set(all_ids) - delivered == set()
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("SELECT COUNT(*) FROM queue_messages").fetchone() == (0,)
        assert con.execute("SELECT COUNT(*) FROM queue_dead_letters").fetchone() == (0,)
    finally:
        con.close()

    # At least once, not exactly once: what was being delivered when the worker died came
    # again in the second run (its ack never happened).
    second_run = {mid for mid, ok, run in hook.arrivals if run == 2}
    assert set(in_progress) <= second_run

    # BLOCK_ON_ERROR: a message reaches the target only after every earlier message of its
    # group was delivered successfully — across the failures and across the kill.
    position = {mid: (g, i) for g, ids in groups.items() for i, mid in enumerate(ids)}
    done = {g: set() for g in groups}
    for mid, ok, _ in hook.arrivals:
        if mid not in position:
            continue
        g, i = position[mid]
        missing = [earlier for earlier in groups[g][:i] if earlier not in done[g]]
        assert not missing, "%s reached the target before %s succeeded" % (mid, missing)
        if ok:
            done[g].add(mid)
    for g, ids in groups.items():  # so the first successes of each group are in publish order
        firsts = []
        for mid, ok, _ in hook.arrivals:
            if ok and mid in position and position[mid][0] == g and mid not in firsts:
                firsts.append(mid)
        assert firsts == ids

    failures = sum(1 for _, ok, _ in hook.arrivals if not ok)
    assert failures == GROUPS * len(range(2, PER_GROUP, 5))  # each failed once, then succeeded
    assert elapsed < 10, elapsed
