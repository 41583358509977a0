"""SQLite with group commit (`SqliteDb`), and the database file holding the edge's queues
(`SqliteStore`: the schema, the single-process lock, recovery at open).

Theory of operation. Every write is a function of the connection that runs inside
the current write transaction (`await db.write(fn, *args)`). The first operation of an
event-loop turn opens the transaction and schedules its commit for the end of the turn; the
operations of that turn share it, and each caller resumes only after the commit succeeded —
so a publish or an ack that returned is on disk, at the cost of one commit (and, with
synchronous=FULL, one fsync) per turn rather than per message; that commit runs on a thread
of its own, so the event loop is not held up while the disk syncs (operations that need the
connection meanwhile wait for it). `defer(fn)` runs an operation
at the end of the turn, just before the commit: a queue gathers the acks of a turn that way
and deletes them with one statement. Each operation runs under a
savepoint: one that raises is undone alone and its caller gets the error; a failed commit
fails every caller of that transaction.

Only one process may use a queue database file: a lock file (`<db>.lock`) is held while it is
open. That is what makes start-up recovery safe: rows still marked in flight when the store
opens belong to a process that died, so they are released at once instead of after their
visibility timeout. (The platform's store, server/platform/store, shares `SqliteDb` without
the lock: several server processes may use one platform database.)
"""

import asyncio
import os
import sqlite3

from flowcatalyst.core.log import logger

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- publish order
    id TEXT NOT NULL,                        -- the message id
    queue_name TEXT NOT NULL,
    message_group_id TEXT,                   -- as published
    group_key TEXT,                          -- the line it waits in (ordered modes), else NULL
    next_on_error INTEGER NOT NULL DEFAULT 0,
    receipt_handle TEXT,                     -- set while in flight
    visible_at INTEGER NOT NULL,             -- unix milliseconds
    payload TEXT NOT NULL,                   -- the pointer JSON
    created_at INTEGER NOT NULL,             -- unix milliseconds
    receive_count INTEGER NOT NULL DEFAULT 0,
    dedup_id TEXT,
    last_error TEXT,
    set_aside INTEGER NOT NULL DEFAULT 0,    -- a failed NEXT_ON_ERROR message out of its line
    UNIQUE (queue_name, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_qm_receipt ON queue_messages (receipt_handle) WHERE receipt_handle IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_qm_free ON queue_messages (queue_name, seq)
    WHERE group_key IS NULL AND receipt_handle IS NULL;
CREATE INDEX IF NOT EXISTS idx_qm_line ON queue_messages (queue_name, group_key, set_aside, seq);
DROP INDEX IF EXISTS idx_qm_visible;  -- early databases had it; every claim paid to maintain it
CREATE INDEX IF NOT EXISTS idx_qm_in_flight ON queue_messages (queue_name, visible_at)
    WHERE receipt_handle IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_qm_aside ON queue_messages (queue_name, visible_at) WHERE set_aside = 1;

CREATE TABLE IF NOT EXISTS queue_groups (
    queue_name TEXT NOT NULL,
    group_key TEXT NOT NULL,
    head_seq INTEGER,                        -- first message of the line (NULL: none in line)
    in_flight INTEGER NOT NULL DEFAULT 0,    -- messages of the group in flight
    PRIMARY KEY (queue_name, group_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_qg_ready ON queue_groups (queue_name, in_flight, head_seq);

CREATE TABLE IF NOT EXISTS queue_dedup (
    queue_name TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (queue_name, dedup_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_qd_expiry ON queue_dedup (expires_at);

CREATE TABLE IF NOT EXISTS queue_dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    queue_name TEXT NOT NULL,
    message_group_id TEXT,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    dead_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_qdl_queue ON queue_dead_letters (queue_name, seq);
"""

SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

_log = logger("sqlite")


class StoreError(Exception):
    pass


class StoreLocked(StoreError):
    pass


def _lock(path):
    """Hold `<path>.lock` exclusively for as long as the returned file stays open."""
    handle = open(path + ".lock", "a+")
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        handle.close()
        raise StoreLocked("%s is in use by another process (lock file %s.lock)" % (path, path)) from None
    return handle


class SqliteDb:
    """A database file in WAL mode with group commit; `schema` (a script) runs at open, then
    `_opened()`. `exclusive`: hold `<path>.lock` so no other process opens the file."""

    schema = ""
    exclusive = False
    kind = "database"  # in error messages: "cannot open PATH as a <kind>"

    def __init__(self, path, synchronous="FULL"):
        synchronous = synchronous.upper()
        if synchronous not in SYNC_MODES:
            raise StoreError("synchronous must be one of %s, got %r" % (", ".join(SYNC_MODES), synchronous))
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise StoreError("directory %s for the database does not exist" % directory)
        self._lock_file = _lock(path) if self.exclusive else None
        self.db = self.reader = None
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=" + synchronous)
            self.db.execute("PRAGMA busy_timeout=5000")
            if self.schema:
                self.db.executescript(self.schema)
            self._opened()
            # Reads outside write operations use a connection of their own: they see what is
            # committed and never wait for (or get in the way of) a commit.
            self.reader = sqlite3.connect(path, check_same_thread=False)
            self.reader.execute("PRAGMA query_only=1")
            self.reader.execute("PRAGMA busy_timeout=5000")
        except sqlite3.DatabaseError as e:
            for con in (self.db, self.reader):
                if con is not None:
                    con.close()
            if self._lock_file is not None:
                self._lock_file.close()
            raise StoreError("cannot open %s as a %s: %s" % (path, self.kind, e)) from e
        # A commit that waits for the disk (FULL, EXTRA: an fsync, about a millisecond) runs on
        # a thread of its own, so the event loop goes on meanwhile (sqlite3 releases the GIL).
        self._commit_thread = None
        if synchronous in ("FULL", "EXTRA"):
            from concurrent.futures import ThreadPoolExecutor

            self._commit_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-commit")
        self._committing = None  # while a commit runs on that thread: done when it has finished
        self._commit_waiters = None  # futures of the operations in the open transaction
        self._deferred = []  # (fn, args, future) to run just before the commit
        self._ops = 0
        self.closed = False

    def _opened(self):
        """Runs once at open, after the schema, on the write connection."""


    async def write(self, fn, *args):
        """Run `fn(db, *args)` in the current transaction; return its result once committed."""
        while self._committing is not None:  # the connection is busy committing
            await self._committing
        loop = self._begin()
        result = self._run(fn, args)
        done = loop.create_future()
        self._commit_waiters.append(done)
        await done
        return result

    def defer(self, fn, *args):
        """Run `fn(db, *args)` in the current transaction just before it commits; returns a
        future of its result (or its exception), set once the transaction has committed."""
        if self.closed:
            raise StoreError("store %s is closed" % self.path)
        done = asyncio.get_running_loop().create_future()
        self._deferred.append((fn, args, done))
        if self._committing is None:
            self._begin()  # else the running commit opens the next transaction when it ends
        return done

    def _begin(self):
        if self.closed:
            raise StoreError("store %s is closed" % self.path)
        loop = asyncio.get_running_loop()
        if self._commit_waiters is None:
            self.db.execute("BEGIN IMMEDIATE")
            self._commit_waiters = []
            loop.call_soon(self._commit)
        return loop

    def _run(self, fn, args):
        """One operation under its own savepoint: if it raises, only its changes are undone."""
        self._ops += 1
        savepoint = "op%d" % self._ops
        self.db.execute("SAVEPOINT " + savepoint)
        try:
            result = fn(self.db, *args)
        except BaseException:
            self.db.execute("ROLLBACK TO " + savepoint)
            self.db.execute("RELEASE " + savepoint)
            raise
        self.db.execute("RELEASE " + savepoint)
        return result

    def _commit(self, inline=False):
        waiters, self._commit_waiters = self._commit_waiters, None
        if waiters is None:  # already committed by close()
            return
        deferred, self._deferred = self._deferred, []
        for fn, args, done in deferred:
            try:
                result = self._run(fn, args)
            except Exception as e:
                done.set_exception(e)
                continue
            waiters.append(_Settle(done, result))
        if self._commit_thread is None or inline:
            self._settle(waiters, self._commit_sql())
            return
        loop = asyncio.get_running_loop()
        self._committing = loop.create_future()
        work = loop.run_in_executor(self._commit_thread, self._commit_sql)
        work.add_done_callback(lambda f: self._committed(waiters, f.result()))

    def _commit_sql(self):
        """COMMIT; on failure ROLLBACK and return the error."""
        try:
            self.db.execute("COMMIT")
            return None
        except sqlite3.Error as e:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return e

    def _committed(self, waiters, error):
        """Back on the event loop after a commit on the thread."""
        committing, self._committing = self._committing, None
        self._settle(waiters, error)
        committing.set_result(None)  # writers waiting for the connection go on
        if self._deferred and not self.closed:
            self._begin()

    def _settle(self, waiters, error):
        if error is not None:
            _log.error("commit failed: the operations of this transaction are undone", db=self.path, error=str(error))
        for done in waiters:
            if done.done():
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(StoreError("commit failed: %s" % error))

    def read(self, sql, args=()):
        """A query of committed data outside any queue operation (monitoring)."""
        return self.reader.execute(sql, args).fetchall()

    def close(self):
        if self.closed:
            return
        if self._commit_thread is not None:
            self._commit_thread.shutdown(wait=True)  # a commit on the thread finishes first
        if self._commit_waiters is not None:
            self._commit(inline=True)
        self.closed = True
        self.db.close()
        self.reader.close()
        if self._lock_file is not None:
            self._lock_file.close()


class SqliteStore(SqliteDb):
    """The edge's queue database: queue_messages, queue_groups, dedup and dead letters."""

    schema = SCHEMA + "PRAGMA user_version=%d;" % SCHEMA_VERSION
    exclusive = True
    kind = "queue database"

    def _opened(self):
        self._release_orphans()

    def _release_orphans(self):
        """Rows left in flight belong to a process that died (this one holds the lock now):
        visible again at once, their receive counted, instead of after their visibility
        timeout."""
        counts = self.db.execute(
            "SELECT queue_name, COUNT(*) FROM queue_messages WHERE receipt_handle IS NOT NULL GROUP BY queue_name"
        ).fetchall()
        if not counts:
            return
        self.db.execute(  # visible since it was created: no clock needed to say "now"
            "UPDATE queue_messages SET receipt_handle = NULL, visible_at = created_at, "
            "last_error = 'in flight when the previous process ended' WHERE receipt_handle IS NOT NULL"
        )
        self.db.execute("UPDATE queue_groups SET in_flight = 0")
        for queue, count in counts:
            _log.warn("released messages left in flight by the previous process", db=self.path, queue=queue, count=count)


class _Settle:
    """A deferred operation's future with the result it gets once its transaction committed
    (looks like a waiter future to _commit)."""

    __slots__ = ("future", "result")

    def __init__(self, future, result):
        self.future = future
        self.result = result

    def done(self):
        return self.future.done()

    def set_result(self, _):
        self.future.set_result(self.result)

    def set_exception(self, error):
        self.future.set_exception(error)
