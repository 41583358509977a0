"""The processor's side of the outbox table: claim, finish, recover, count (spec/platform.md
§2.6, §5.2), on SQLite, PostgreSQL and MySQL / MariaDB, through one blocking DB-API
connection. The processor runs every call on its own single worker thread.

Claiming, theory of operation. Several processors may serve one table, and a message group
must never be worked by two at once, nor overtake itself. `FOR UPDATE SKIP LOCKED` alone
cannot promise that: two claimers skip each other's locked rows and take *later* rows of the
same group. So a claim is one short transaction under a lock that only claimers take
(PostgreSQL `pg_try_advisory_xact_lock`, MySQL `GET_LOCK`, SQLite `BEGIN IMMEDIATE`); a
claimer that finds it taken skips this poll. Inside it:

1. candidates: PENDING rows, oldest first, of no group that has a row IN_PROGRESS (another
   batch of the group is out, here or in another processor) or — with block-on-error — a
   row that failed for good (the group waits for an operator);
2. per group, the run of rows up to the first one still waiting out its retry backoff
   (`retry_count` > 0 and `updated_at` too recent), so a group's retry holds the rows after
   it; ungrouped rows wait only for themselves;
3. the chosen rows become IN_PROGRESS (`WHERE status = 0`) and the transaction commits.

A processor that dies leaves IN_PROGRESS rows: `recover` returns those older than the
processing timeout to PENDING, and their groups go on in order.
"""

import time

from . import dbapi, schema

LOCK_NAME = "fc-outbox-claim:%s"
BUSY = (schema.IN_PROGRESS,)
FAILED = (
    schema.BAD_REQUEST,
    schema.INTERNAL_ERROR,
    schema.UNAUTHORIZED,
    schema.FORBIDDEN,
    schema.GATEWAY_ERROR,
)


class Row:
    __slots__ = (
        "id",
        "type",
        "message_group",
        "payload",
        "retry_count",
        "updated_at",
        "created_at",
    )

    def __init__(self, values):
        for name, value in zip(self.__slots__, values, strict=True):
            setattr(self, name, value)

    def __repr__(self):
        return "Row(%s %s group=%s retries=%d)" % (
            self.id,
            self.type,
            self.message_group,
            self.retry_count,
        )


class OutboxRepository:
    def __init__(self, url, table=schema.DEFAULT_TABLE, block_on_error=True, backoff=(5.0,)):
        self.url = url
        self.table = table
        self.block_on_error = block_on_error
        self.backoff = tuple(backoff) or (0.0,)
        self.dialect = dbapi.dialect_of_url(url)
        self.conn = None

    # -- connection ---------------------------------------------------------------------------

    def open(self):
        self.conn = dbapi.connect(self.url)
        if self.dialect == schema.SQLITE:
            self.conn.isolation_level = None  # transactions by hand: BEGIN IMMEDIATE for claims
            self.conn.execute("PRAGMA busy_timeout = 5000")
        elif self.dialect == schema.MYSQL:
            self._run("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            self.conn.commit()
        return self

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _run(self, sql, params=()):
        cursor = self.conn.cursor()
        cursor.execute(dbapi.adapt(sql, self.dialect), tuple(params))
        return cursor

    def _begin(self, immediate=False):
        if self.dialect == schema.SQLITE:
            self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def _commit(self):
        if self.dialect == schema.SQLITE:
            self.conn.execute("COMMIT")
        else:
            self.conn.commit()

    def _rollback(self):
        try:
            if self.dialect == schema.SQLITE:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            else:
                self.conn.rollback()
        except Exception:  # the connection is gone: the next call reconnects or fails
            pass

    def _transaction(self, work, immediate=False):
        """Run `work()` in a transaction, reconnecting once when the connection was lost."""
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.open()
                self._begin(immediate)
                result = work()
                self._commit()
                return result
            except dbapi.connection_errors():
                self._rollback()
                self.close()
                if attempt == 2:
                    raise
            except BaseException:
                self._rollback()
                raise

    def now(self):
        return dbapi.timestamp(self.dialect, time.time())

    # -- claiming -----------------------------------------------------------------------------

    def claim(self, limit, per_group=None):
        """Up to `limit` rows (at most `per_group` of one group), now IN_PROGRESS, in created
        order ([] when another processor holds the claim lock)."""
        if limit <= 0:
            return []
        return self._transaction(lambda: self._claim(limit, per_group), immediate=True)

    def _try_lock(self):
        name = LOCK_NAME % self.table
        if self.dialect == schema.POSTGRES:
            return bool(
                self._run("SELECT pg_try_advisory_xact_lock(hashtext(?))", (name,)).fetchone()[0]
            )
        if self.dialect == schema.MYSQL:
            return self._run("SELECT GET_LOCK(?, 0)", (name,)).fetchone()[0] == 1
        return True  # SQLite: BEGIN IMMEDIATE already made this the only writer

    def _unlock(self):
        if self.dialect == schema.MYSQL:  # session-level, unlike PostgreSQL's
            self._run("SELECT RELEASE_LOCK(?)", (LOCK_NAME % self.table,))

    def _claim(self, limit, per_group):
        if not self._try_lock():
            return []
        try:
            held = BUSY + (FAILED if self.block_on_error else ())
            rows = [
                Row(values)
                for values in self._run(
                    "SELECT id, type, message_group, payload, retry_count, updated_at, created_at "
                    "FROM %(t)s WHERE status = 0 AND (message_group IS NULL OR message_group NOT IN "
                    "(SELECT message_group FROM %(t)s WHERE message_group IS NOT NULL AND status IN (%(held)s))) "
                    "ORDER BY created_at, id LIMIT ?"
                    % {"t": self.table, "held": ",".join(str(s) for s in held)},
                    (limit * 2,),  # some may still wait out a backoff
                ).fetchall()
            ]
            chosen = self.due(rows, time.time(), per_group)[:limit]
            if chosen:
                self._run(
                    "UPDATE %s SET status = %d, updated_at = ? WHERE status = 0 AND id IN (%s)"
                    % (self.table, schema.IN_PROGRESS, ",".join("?" * len(chosen))),
                    [self.now()] + [r.id for r in chosen],
                )
            return chosen
        finally:
            self._unlock()

    def due(self, rows, now, per_group=None):
        """The rows that may go now: a retried row after its backoff, and in a group only the
        rows before the first one that must still wait (and at most `per_group` of them, so
        one group's unit stays a few batches, well inside the processing timeout)."""
        waiting_groups = set()
        taken = {}
        out = []
        for row in rows:
            if row.message_group in waiting_groups:
                continue
            if row.message_group is not None and per_group is not None:
                taken[row.message_group] = taken.get(row.message_group, 0) + 1
                if taken[row.message_group] > per_group:
                    waiting_groups.add(row.message_group)
                    continue
            if row.retry_count and now - dbapi.epoch(row.updated_at) < self.retry_wait(
                row.retry_count
            ):
                if row.message_group is not None:
                    waiting_groups.add(row.message_group)
                continue
            out.append(row)
        return out

    def retry_wait(self, retry_count):
        return self.backoff[min(retry_count, len(self.backoff)) - 1]

    # -- finishing ----------------------------------------------------------------------------

    def finish(self, deleted, retried, failed, released):
        """In one transaction: delete the forwarded rows (ids), put `retried` [(id, error)] back
        to PENDING with one more retry, keep `failed` [(id, status, error)] with their status,
        and release `released` (ids) to PENDING untouched."""

        def work():
            now = self.now()
            if deleted:
                self._run(
                    "DELETE FROM %s WHERE id IN (%s)" % (self.table, ",".join("?" * len(deleted))),
                    deleted,
                )
            for row_id, error in retried:
                self._run(
                    "UPDATE %s SET status = 0, retry_count = retry_count + 1, error_message = ?, "
                    "updated_at = ? WHERE id = ?" % self.table,
                    (error[:2000], now, row_id),
                )
            for row_id, status, error in failed:
                self._run(
                    "UPDATE %s SET status = ?, retry_count = retry_count + 1, error_message = ?, "
                    "updated_at = ? WHERE id = ?" % self.table,
                    (status, (error or "")[:2000], now, row_id),
                )
            if released:
                self._run(
                    "UPDATE %s SET status = 0, updated_at = ? WHERE status = %d AND id IN (%s)"
                    % (self.table, schema.IN_PROGRESS, ",".join("?" * len(released))),
                    [now] + list(released),
                )

        self._transaction(work)

    def recover(self, older_than_seconds):
        """IN_PROGRESS rows older than that back to PENDING (their processor died); how many."""

        def work():
            cutoff = dbapi.timestamp(self.dialect, time.time() - older_than_seconds)
            cursor = self._run(
                "UPDATE %s SET status = 0 WHERE status = %d AND updated_at < ?"
                % (self.table, schema.IN_PROGRESS),
                (cutoff,),
            )
            return cursor.rowcount

        return self._transaction(work)

    # -- operators and metrics ----------------------------------------------------------------

    def stats(self):
        """{"by_status": {code: rows}, "oldest_pending_age": seconds or None}."""

        def work():
            by_status = {
                status: count
                for status, count in self._run(
                    "SELECT status, COUNT(*) FROM %s GROUP BY status" % self.table
                ).fetchall()
            }
            oldest = self._run(
                "SELECT MIN(created_at) FROM %s WHERE status = 0" % self.table
            ).fetchone()[0]
            age = time.time() - dbapi.epoch(oldest) if oldest is not None else None
            return {"by_status": by_status, "oldest_pending_age": age}

        return self._transaction(work)

    def blocked_groups(self):
        """[(group, row id, status, error)] of groups held behind a row that failed for good."""

        def work():
            return self._run(
                "SELECT message_group, id, status, error_message FROM %s WHERE message_group IS NOT NULL "
                "AND status IN (%s) ORDER BY created_at, id"
                % (self.table, ",".join(str(s) for s in FAILED))
            ).fetchall()

        return self._transaction(work)

    def unblock(self, group):
        """Requeue the failed rows of `group` (status PENDING, retries reset); how many."""

        def work():
            return self._run(
                "UPDATE %s SET status = 0, retry_count = 0, error_message = NULL, updated_at = ? "
                "WHERE message_group = ? AND status IN (%s)"
                % (self.table, ",".join(str(s) for s in FAILED)),
                (self.now(), group),
            ).rowcount

        return self._transaction(work)
