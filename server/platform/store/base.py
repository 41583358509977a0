"""What both stores share: errors, placeholder helpers, batching."""

from flowcatalyst.edge.sqlstore import StoreError

# Bound parameters per statement: SQLite allows 32766, PostgreSQL 65535.
MAX_PARAMS = 30000


class IntegrityError(StoreError):
    """A unique or foreign-key constraint refused the change."""


def marks(n):
    """`?,?,?` for an IN list of n values."""
    return ",".join("?" * n)


def row_marks(rows, columns):
    """`(?,?),(?,?)` for a multi-row VALUES of `rows` rows."""
    one = "(" + marks(columns) + ")"
    return ",".join([one] * rows)


def chunked(rows, columns):
    """`rows` in slices small enough for one statement of `columns` parameters per row."""
    size = max(1, MAX_PARAMS // max(1, columns))
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def run_now(coroutine):
    """Run a coroutine that never suspends to its end, synchronously; RuntimeError if it does
    suspend (a unit of work awaited something other than the store)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError(
        "a unit of work awaited something other than its transaction (see store/__init__.py)"
    )


class Tx:
    """A unit of work's view of its transaction (both stores implement it)."""

    dialect = None  # "sqlite" or "postgres"
    skip_locked = ""  # appended to a claiming SELECT: " FOR UPDATE SKIP LOCKED" on PostgreSQL

    async def execute(self, sql, params=()):
        """Run a statement; the number of rows it changed."""
        raise NotImplementedError

    async def fetchall(self, sql, params=()):
        raise NotImplementedError

    async def fetchone(self, sql, params=()):
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def insert(self, table, columns, rows, suffix=""):
        """Insert `rows` (tuples in `columns` order) with multi-row VALUES statements, as few as
        the parameter limit allows; `suffix` follows VALUES (e.g. `ON CONFLICT DO NOTHING
        RETURNING id`). The rows RETURNING gave, or the number inserted."""
        returned = [] if "RETURNING" in suffix.upper() else 0
        head = "INSERT INTO %s (%s) VALUES " % (table, ",".join(columns))
        for part in chunked(rows, len(columns)):
            sql = head + row_marks(len(part), len(columns)) + (" " + suffix if suffix else "")
            params = [value for row in part for value in row]
            if isinstance(returned, list):
                returned.extend(await self.fetchall(sql, params))
            else:
                returned += await self.execute(sql, params)
        return returned

    async def try_lock(self, name):
        """Take the named lock until this transaction ends, if no other transaction has it:
        True when taken. (SQLite has one writer at a time: always True.)"""
        return True
