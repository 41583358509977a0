"""The platform store on one SQLite file (the embedded default).

Writes go through edge/sqlstore.py's group commit: the units of work of one event-loop turn
run one after another, each under its own savepoint, inside one transaction that commits at
the end of the turn; a unit's caller resumes once that commit is on disk. A unit is driven to
its end synchronously (it never waits, store/__init__.py), so no other coroutine runs in the
middle of it. Reads run on a second, read-only connection, in a transaction of their own, and
see what is committed.

Several processes may share the file (WAL mode; a writer waits up to 5 s for another), but a
split deployment belongs on PostgreSQL.
"""

import sqlite3

from flowcatalyst.edge.sqlstore import SqliteDb

from .base import IntegrityError, StoreError, Tx, run_now


def _dict_rows(cursor, row):
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


class SqliteTx(Tx):
    dialect = "sqlite"

    def __init__(self, connection):
        self.connection = connection

    async def execute(self, sql, params=()):
        return self._run(sql, params).rowcount

    async def fetchall(self, sql, params=()):
        return self._run(sql, params).fetchall()

    def _run(self, sql, params):
        try:
            return self.connection.execute(sql, params)
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from e
        except sqlite3.Error as e:
            raise StoreError("SQLite: %s" % e) from e


class _PlatformDb(SqliteDb):
    kind = "platform database"

    def _opened(self):
        self.db.row_factory = _dict_rows
        self.db.execute("PRAGMA foreign_keys=ON")


class SqlitePlatformStore:
    dialect = "sqlite"

    def __init__(self, path, synchronous="FULL"):
        self.url = "sqlite://" + path
        self.path = path
        self._db = _PlatformDb(path, synchronous)
        self._db.reader.row_factory = _dict_rows
        self._db.reader.isolation_level = None

    async def write(self, unit, *args):
        """Run `unit(tx, *args)` in the current write transaction; its result once committed."""
        return await self._db.write(self._run, unit, args)

    @staticmethod
    def _run(connection, unit, args):
        return run_now(unit(SqliteTx(connection), *args))

    async def read(self, unit, *args):
        """Run `unit(tx, *args)` on a snapshot of what is committed."""
        reader = self._db.reader
        reader.execute("BEGIN")
        try:
            return run_now(unit(SqliteTx(reader), *args))
        finally:
            reader.execute("COMMIT")

    async def fetchall(self, sql, params=()):
        try:
            return self._db.reader.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(str(e)) from e

    async def fetchone(self, sql, params=()):
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def close(self):
        if not self._db.closed:
            self._db.close()
