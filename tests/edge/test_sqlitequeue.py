"""What only the SQLite queue has (edge/sqlstore.py, edge/sqlitequeue.py): several queues in one
file, restarts, the lock file, rows written by someone else, group commit and failed commits,
store options. The port-level behaviour is the shared contract (test_sqlitequeue_contract.py).

Everything runs on real database files in tmp_path; time is a fake wall clock."""

import asyncio
import sqlite3
import subprocess
import sys
import time

import pytest

from flowcatalyst.core.message import BLOCK_ON_ERROR, IMMEDIATE, NEXT_ON_ERROR, MessageError
from flowcatalyst.core.ports import PublishResult, ReceiptHandleError
from flowcatalyst.edge.sqlitequeue import SqliteQueue
from flowcatalyst.edge.sqlstore import SqliteStore, StoreError, StoreLocked
from tests.queue_contract import FakeClock, ack_all, aio, dead_ids, ids, msg, pointer, poll

WALL_START = 1_700_000_000.0


class Db:
    """One database file: opens stores on it (one at a time, as the lock demands) and closes
    whatever is still open at the end of the test."""

    def __init__(self, path):
        self.path = str(path)
        self.clock = FakeClock(WALL_START)
        self.store = None

    def open(self, synchronous="FULL"):
        self.store = SqliteStore(self.path, synchronous=synchronous)
        return self.store

    def queue(self, name="q", **options):
        if self.store is None or self.store.closed:
            self.open()
        options.setdefault("clock", self.clock)
        return SqliteQueue(self.store, name, **options)

    def restart(self, name="q", **options):
        """Close the store as a stopping process would, and open the file again."""
        self.store.close()
        self.open()
        return self.queue(name, **options)

    def rows(self, sql, args=()):
        """Read through a connection of its own: what is committed, nothing else."""
        con = sqlite3.connect(self.path)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def close(self):
        if self.store is not None:
            self.store.close()


@pytest.fixture
def db(tmp_path):
    d = Db(tmp_path / "edge.db")
    yield d
    d.close()


def counting_statements(store):
    """Record every statement the store's connection executes."""
    seen = []
    store.db.set_trace_callback(seen.append)
    return seen


def committed(statements):
    return sum(1 for s in statements if s.strip().upper() == "COMMIT")


# -- several queues in one file ----------------------------------------------------------------------


@aio
async def test_queues_in_one_file_keep_apart(db):
    a = db.queue("alpha", max_receive_count=1)
    b = db.queue("beta", max_receive_count=1)
    assert (await a.publish(msg("m", group="g"))).accepted
    assert (await b.publish(msg("m", group="g"))).accepted  # the same id in another queue
    await a.publish(msg("m2", group="g"))
    await b.publish(msg("x", mode=IMMEDIATE))
    assert (await a.size(), await b.size()) == (2, 2)

    (got_a,) = await poll(a, 1)
    assert got_a.queue_identifier == "alpha"
    got_b = await poll(b)  # group g of alpha is held; beta's group g is not
    assert ids(got_b) == ["m", "x"] and {m.queue_identifier for m in got_b} == {"beta"}
    with pytest.raises(ReceiptHandleError):
        await a.ack(got_b[0].receipt_handle)  # a handle of another queue
    with pytest.raises(ReceiptHandleError):
        await b.nack(got_a.receipt_handle, 0)

    await a.nack(got_a.receipt_handle, 0, "down")  # alpha's m dies; beta's m is untouched
    assert await dead_ids(a) == ["m"] and await dead_ids(b) == []
    assert (await a.metrics())["dead_lettered"] == 1 and (await b.metrics())["dead_lettered"] == 0
    assert await b.replay_dead_letters() == 0 and await b.delete_dead_letters() == 0
    assert await dead_ids(a) == ["m"]
    await ack_all(b, got_b)
    assert await b.size() == 0 and await a.size() == 1
    assert (await b.publish(msg("m2", mode=IMMEDIATE))).accepted  # dedup is per queue too
    assert ids(await poll(a)) == ["m2"]


# -- restarts ----------------------------------------------------------------------------------------


@aio
async def test_restart_keeps_everything_and_releases_what_was_in_flight(db):
    q = db.queue(visibility_timeout=300, max_receive_count=2, dedup_window=600)
    for i in range(3):
        await q.publish(msg("g%d" % i, group="g"))
    await q.publish(msg("n0", group="n", mode=NEXT_ON_ERROR))
    await q.publish(msg("n1", group="n", mode=NEXT_ON_ERROR))
    for name in ("i0", "i1", "i2", "done", "dead"):
        await q.publish(msg(name, mode=IMMEDIATE))
    batch = {m.message.id: m for m in await poll(q, 20)}
    assert sorted(batch) == ["dead", "done", "g0", "g1", "g2", "i0", "i1", "i2", "n0", "n1"]
    await q.ack(batch["done"].receipt_handle)
    await q.nack(batch["i1"].receipt_handle, 60, "HTTP 503")  # delayed across the restart
    await q.nack(batch["n0"].receipt_handle, 60, "HTTP 500")  # set aside across the restart
    await q.nack(batch["dead"].receipt_handle, 0, "HTTP 500")
    (dead,) = await poll(q)
    assert dead.message.id == "dead"
    await q.nack(dead.receipt_handle, 0, "HTTP 500")  # its last receive: dead-lettered
    assert await dead_ids(q) == ["dead"]
    # Still in flight: g0, g1, g2, i0, i2, n1.

    q = db.restart(visibility_timeout=300, max_receive_count=2, dedup_window=600)
    assert await q.size() == 8
    assert await dead_ids(q) == ["dead"]
    assert (await q.publish(msg("done", mode=IMMEDIATE))).status == PublishResult.DUPLICATE  # dedup kept
    m = await q.metrics()
    assert (m["in_flight"], m["pending"], m["delayed"]) == (0, 6, 2)
    again = await poll(q, 20)  # released at once, not after the 300 s visibility timeout
    assert ids(again) == ["g0", "g1", "g2", "n1", "i0", "i2"]
    assert {m.receive_count for m in again} == {2}  # the interrupted receive counted
    await ack_all(q, again)
    db.clock.advance(60)
    back = await poll(q)
    assert ids(back) == ["n0", "i1"] and [m.receive_count for m in back] == [2, 2]
    # Their reasons survived the restart too.
    await q.nack(back[1].receipt_handle, 0)
    (dead,) = [d for d in await q.list_dead_letters() if d.message.id == "i1"]
    assert "HTTP 503" in dead.reason
    await q.ack(back[0].receipt_handle)
    assert await q.size() == 0


@aio
async def test_rows_in_flight_at_start_are_released_with_a_reason(db):
    q = db.queue(max_receive_count=2, visibility_timeout=300)
    await q.publish(msg("a", mode=IMMEDIATE))
    await poll(q)
    q = db.restart(max_receive_count=2, visibility_timeout=300)
    assert (await poll(q))[0].receive_count == 2
    db.clock.advance(301)  # its visibility ends while the process is down: the same
    seen = []
    q = db.restart(max_receive_count=2, visibility_timeout=300)
    q.on_dead_letter = seen.append
    assert await poll(q) == []  # a third receive would be one too many
    assert [d.message.id for d in seen] == ["a"]
    assert seen[0].receive_count == 2
    assert "in flight when the previous process ended" in seen[0].reason
    assert await q.size() == 0


@aio
async def test_max_receive_count_through_visibility_expiry_across_a_restart(db):
    q = db.queue(visibility_timeout=10, max_receive_count=3)
    await q.publish(msg("a0", group="g"))
    await q.publish(msg("a1", group="g"))
    assert ids(await poll(q, 1)) == ["a0"]
    db.clock.advance(10)
    assert (await poll(q, 1))[0].receive_count == 2  # expired once, received again
    q = db.restart(visibility_timeout=10, max_receive_count=3)
    assert (await poll(q, 1))[0].receive_count == 3  # released at start-up, third receive
    db.clock.advance(10)
    assert ids(await poll(q)) == ["a1"]  # expired on its last receive: dead, the group goes on
    assert await dead_ids(q) == ["a0"]
    (dead,) = await q.list_dead_letters()
    assert dead.receive_count == 3 and "visibility timeout expired" in dead.reason


@aio
async def test_a_second_queue_object_in_the_same_process_releases_nothing(db):
    # The router makes a new consumer when a queue's config changes, while the pools still
    # deliver what the old one received: that is not a restart.
    old = db.queue(visibility_timeout=300)
    await old.publish(msg("a0", group="g"))
    await old.publish(msg("a1", group="g"))
    (a0,) = await poll(old, 1)
    new = db.queue(visibility_timeout=300)
    assert await poll(new) == []  # a0 still in flight, its group still held
    await old.ack(a0.receipt_handle)  # the old object answers for what it received
    (a1,) = await poll(new)
    assert a1.message.id == "a1" and a1.receive_count == 1
    await new.nack(a1.receipt_handle, 0, "x")  # handles work through either object
    (again,) = await poll(old)
    assert again.receive_count == 2
    assert (await new.metrics())["in_flight"] == 1


@aio
async def test_a_queue_on_a_file_with_nothing_in_flight_starts_quietly(db):
    q = db.queue()
    await q.publish(msg("a", mode=IMMEDIATE))
    q = db.restart()
    assert ids(await poll(q)) == ["a"] and (await poll(q)) == []


# -- the lock file -----------------------------------------------------------------------------------


def test_a_second_store_on_the_same_file_is_refused_until_the_first_closes(db):
    first = db.open()
    with pytest.raises(StoreLocked, match="in use"):
        SqliteStore(db.path)
    # Another process is refused as well (flock is per open file, not per process).
    probe = (
        "import sys\n"
        "from flowcatalyst.edge.sqlstore import SqliteStore, StoreLocked\n"
        "try:\n"
        "    SqliteStore(sys.argv[1]).close()\n"
        "except StoreLocked:\n"
        "    sys.exit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", probe, db.path], timeout=30).returncode == 3
    first.close()
    second = SqliteStore(db.path)
    second.close()
    assert subprocess.run([sys.executable, "-c", probe, db.path], timeout=30).returncode == 0


def test_a_file_that_is_not_a_database_is_refused_and_stays_unlocked(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not an sqlite database, not at all" * 100)
    for _ in range(2):  # the failed open released its lock and connection
        with pytest.raises(StoreError, match="cannot open"):
            SqliteStore(str(path))


def test_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        SqliteStore(str(tmp_path / "nowhere" / "edge.db"))


# -- store options ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, level", [("OFF", 0), ("normal", 1), ("FULL", 2), ("Extra", 3)])
def test_synchronous_mode(tmp_path, mode, level):
    store = SqliteStore(str(tmp_path / "s.db"), synchronous=mode)
    try:
        assert store.db.execute("PRAGMA synchronous").fetchall() == [(level,)]  # the writing connection's
        assert store.read("PRAGMA journal_mode") == [("wal",)]
    finally:
        store.close()


@pytest.mark.parametrize("mode", ["", "FAST", "1", "full; DROP TABLE queue_messages"])
def test_synchronous_mode_is_validated_before_anything_is_opened(tmp_path, mode):
    path = tmp_path / "s.db"
    with pytest.raises(StoreError, match="synchronous must be one of OFF, NORMAL, FULL, EXTRA"):
        SqliteStore(str(path), synchronous=mode)
    assert not path.exists()
    SqliteStore(str(path)).close()  # and nothing was left locked


# -- rows the queue did not write ------------------------------------------------------------------------


def _insert_row(db, msg_id, payload, group_key=None, queue="q"):
    con = sqlite3.connect(db.path)
    with con:
        con.execute(
            "INSERT INTO queue_messages (id, queue_name, group_key, visible_at, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (msg_id, queue, group_key, int(WALL_START * 1000), payload, int(WALL_START * 1000)),
        )
    con.close()


@aio
async def test_poison_rows_are_dead_lettered_by_the_next_poll_and_the_rest_is_delivered(db):
    q = db.queue()
    seen = []
    q.on_dead_letter = seen.append
    await q.publish(msg("before", mode=IMMEDIATE))
    await q.publish(msg("g0", group="g"))
    await q.publish(msg("g1", group="g"))
    await q.publish(msg("g2", group="g"))
    db.store.close()  # rows written by something else, with the queue's store closed
    _insert_row(db, "no-target", '{"id": "no-target", "mediationType": "HTTP"}')
    _insert_row(db, "not-json", "{this is not json")
    con = sqlite3.connect(db.path)
    with con:  # a stored row of a group that went bad
        con.execute("UPDATE queue_messages SET payload = '[1, 2]' WHERE id = 'g1'")
    con.close()
    db.open()
    q = db.queue()
    q.on_dead_letter = seen.append
    await q.publish(msg("after", mode=IMMEDIATE))

    got = await poll(q)
    # Bad rows never reach the router; g1 can never be delivered, so its group goes on.
    assert ids(got) == ["before", "g0", "g2", "after"]
    reasons = {d.message.id: d.reason for d in seen}
    assert set(reasons) == {"no-target", "not-json", "g1"}
    assert all(r.startswith("not a valid message pointer") for r in reasons.values())
    assert "mediationTarget" in reasons["no-target"] and "JSON" in reasons["not-json"]
    await ack_all(q, got)
    assert await poll(q) == [] and await q.size() == 0

    listed = {d.message.id: d for d in await q.list_dead_letters()}
    assert set(listed) == {"no-target", "not-json", "g1"}
    assert listed["not-json"].to_dict()["message"] == {"id": "not-json", "raw": "{this is not json"}
    assert listed["g1"].to_dict()["message"] == {"id": "g1", "raw": [1, 2]}
    assert listed["g1"].receive_count == 0
    assert await q.replay_dead_letters() == 0  # a bad payload stays a dead letter
    assert len(await q.list_dead_letters()) == 3
    assert await q.delete_dead_letters(["not-json"]) == 1


# -- group commit -------------------------------------------------------------------------------------


@aio
async def test_operations_of_one_loop_turn_share_one_commit(db):
    q = db.queue()
    statements = counting_statements(db.store)
    results = await asyncio.gather(*[q.publish(msg("m%d" % i, mode=IMMEDIATE)) for i in range(50)])
    assert all(r.accepted for r in results)
    assert committed(statements) == 1
    assert db.rows("SELECT COUNT(*) FROM queue_messages") == [(50,)]  # on disk for others

    batch = await poll(q, 50)
    statements.clear()
    await asyncio.gather(*[q.ack(m.receipt_handle) for m in batch[:25]], *[q.nack(m.receipt_handle, 5) for m in batch[25:]])
    assert committed(statements) == 1

    statements.clear()
    for i in range(3):  # one after another: one commit each
        await q.publish(msg("s%d" % i, mode=IMMEDIATE))
    assert committed(statements) == 3


@aio
async def test_a_caller_resumes_only_after_its_commit(db):
    q = db.queue()
    task = asyncio.create_task(q.publish(msg("a", mode=IMMEDIATE)))
    await asyncio.sleep(0)  # the publish ran and waits for the end of the loop turn
    assert not task.done()
    assert db.rows("SELECT COUNT(*) FROM queue_messages") == [(0,)]  # not committed yet
    assert (await task).accepted
    assert db.rows("SELECT COUNT(*) FROM queue_messages") == [(1,)]


@aio
async def test_an_operation_that_raises_is_undone_alone(db):
    q = db.queue()
    statements = counting_statements(db.store)

    def half_done(con):
        con.execute(
            "INSERT INTO queue_dead_letters (id, queue_name, payload, reason, receive_count, created_at, dead_at) "
            "VALUES ('ghost', 'q', '{}', 'x', 0, 0, 0)"
        )
        con.execute("DELETE FROM queue_messages")
        raise ValueError("changed its mind")

    await q.publish(msg("keep", mode=IMMEDIATE))
    results = await asyncio.gather(
        q.publish(msg("a", mode=IMMEDIATE)),
        db.store.write(half_done),
        q.ack("no-such-handle"),
        q.publish(msg("b", mode=IMMEDIATE)),
        return_exceptions=True,
    )
    assert results[0].accepted and results[3].accepted
    assert isinstance(results[1], ValueError) and isinstance(results[2], ReceiptHandleError)
    assert committed(statements) == 2  # the first publish, then the whole gather
    assert db.rows("SELECT id FROM queue_messages ORDER BY seq") == [("keep",), ("a",), ("b",)]
    assert db.rows("SELECT COUNT(*) FROM queue_dead_letters") == [(0,)]
    assert q.counters["acked"] == 0 and q.counters["published"] == 3


@aio
async def test_a_failed_commit_fails_every_caller_and_keeps_nothing(db):
    q = db.queue()
    await q.publish(msg("old", mode=IMMEDIATE))
    # A deferred foreign key is checked at COMMIT: a real commit failure, not a mock.
    db.store.db.execute("PRAGMA foreign_keys = ON")
    db.store.db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    db.store.db.execute("CREATE TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")

    def orphan(con):
        con.execute("INSERT INTO child VALUES (42)")
        return "written"

    (old,) = await poll(q)
    results = await asyncio.gather(
        q.publish(msg("a", mode=IMMEDIATE)),
        q.publish_batch([(msg("b", mode=IMMEDIATE), None), (msg("c", group="g"), None)]),
        q.ack(old.receipt_handle),
        db.store.write(orphan),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreError) and "commit failed" in str(r) for r in results), results
    assert db.rows("SELECT id, receipt_handle IS NOT NULL FROM queue_messages") == [("old", 1)]
    assert db.rows("SELECT COUNT(*) FROM child") == [(0,)]
    assert q.counters["published"] == 1 and q.counters["acked"] == 0  # "old" only
    # The store goes on: the next turn's transaction commits.
    await q.ack(old.receipt_handle)
    assert (await q.publish(msg("a", mode=IMMEDIATE))).accepted
    assert db.rows("SELECT id FROM queue_messages") == [("a",)]


@aio
async def test_close_commits_what_is_pending(db):
    q = db.queue()
    errors = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    task = asyncio.create_task(q.publish(msg("a", mode=IMMEDIATE)))
    await asyncio.sleep(0)
    db.store.close()  # before the loop turn ends
    assert (await task).accepted
    await asyncio.sleep(0.01)  # the commit scheduled for the turn finds nothing left to do
    assert errors == []
    assert db.rows("SELECT id FROM queue_messages") == [("a",)]
    with pytest.raises(StoreError, match="closed"):
        await q.publish(msg("b", mode=IMMEDIATE))
    assert not q.is_healthy()


# -- a poll cancelled while its claim commits --------------------------------------------------------


@aio
async def test_a_poll_cancelled_while_its_claim_commits_gives_the_messages_back(db):
    q = db.queue(visibility_timeout=300)
    await q.publish(msg("a", mode=IMMEDIATE))
    await q.publish(msg("g0", group="g"))
    task = asyncio.create_task(q.poll(10, wait=0))
    await asyncio.sleep(0)  # the claim ran; its commit comes at the end of this loop turn
    task.cancel()  # as the router does to a poll loop it stops
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.01)
    again = await poll(q)
    assert ids(again) == ["a", "g0"]
    assert [m.receive_count for m in again] == [1, 1]  # as if never received
    assert q.counters["received"] == 2


# -- publishing ---------------------------------------------------------------------------------------


@aio
async def test_an_invalid_pointer_stores_nothing_and_opens_no_transaction(db):
    q = db.queue()
    statements = counting_statements(db.store)
    for bad in ({"id": "x"}, "not json", b"[1, 2]", pointer("x") | {"mediationTarget": "ftp://h/"}):
        with pytest.raises(MessageError):
            await q.publish(bad)
    with pytest.raises(MessageError):
        await q.publish_batch([(pointer("a"), "k"), (pointer("b", group="g", mode=BLOCK_ON_ERROR), None), ({"id": "c"}, None)])
    assert statements == []
    for table in ("queue_messages", "queue_groups", "queue_dedup", "queue_dead_letters"):
        assert db.rows("SELECT COUNT(*) FROM " + table) == [(0,)], table
    assert q.counters["published"] == 0


@aio
async def test_expired_deduplication_ids_are_forgotten(db):
    q = db.queue(dedup_window=60)
    await q.publish_batch([(msg("m%d" % i, mode=IMMEDIATE), None) for i in range(100)])
    await ack_all(q, await poll(q, 100))
    assert db.rows("SELECT COUNT(*) FROM queue_dedup") == [(100,)]
    db.clock.advance(60)
    assert (await q.publish(msg("m0", mode=IMMEDIATE))).accepted
    assert db.rows("SELECT dedup_id FROM queue_dedup") == [("m0",)]


# -- metrics on a backlog ----------------------------------------------------------------------------


@aio
async def test_metrics_on_a_backlog(db):
    q = db.queue(visibility_timeout=30, max_receive_count=1)
    items = []
    for i in range(3000):
        if i % 3 == 0:
            items.append((msg("i%d" % i, mode=IMMEDIATE), None))
        else:
            items.append((msg("g%d" % i, group="grp%d" % (i % 50), mode=BLOCK_ON_ERROR if i % 2 else NEXT_ON_ERROR), None))
    await q.publish_batch(items)
    db.clock.advance(10)
    batch = await poll(q, 100)
    assert len(batch) == 100
    await ack_all(q, batch[:40])
    for m in batch[40:60]:
        await q.defer(m.receipt_handle, 20)
    for m in batch[60:70]:
        await q.nack(m.receipt_handle, 0, "boom")  # one receive allowed: dead-lettered
    started = time.monotonic()
    m = await q.metrics()
    took = time.monotonic() - started
    assert m == {"pending": 3000 - 40 - 10 - 30 - 20, "in_flight": 30, "delayed": 20, "dead_lettered": 10, "oldest_pending_age": 10.0}
    assert await q.size() == 3000 - 40 - 10
    assert took < 0.5, took
    db.clock.advance(30)  # the 30 in flight expire, the 20 deferred come back
    m = await q.metrics()
    assert (m["pending"], m["in_flight"], m["delayed"]) == (2950, 0, 0)
    assert m["oldest_pending_age"] == 40.0
