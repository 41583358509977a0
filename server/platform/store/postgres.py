"""The platform store on PostgreSQL: psycopg 3, async, with a connection pool.

Sessions run in UTC; TIMESTAMPTZ columns load as clock.py's strings and JSONB as JSON text,
so rows look the same as SQLite's. `?` placeholders become psycopg's `%s` (statements are
written without a literal `%` or `?`).
"""

import psycopg
from psycopg.adapt import Loader
from psycopg.rows import dict_row

from .. import clock
from . import redact
from .base import IntegrityError, StoreError, Tx


class _TimestampLoader(Loader):
    def load(self, data):
        return clock.from_postgres(bytes(data).decode())


class _TextLoader(Loader):
    def load(self, data):
        return bytes(data).decode()


_converted = {}


def _pg(sql):
    out = _converted.get(sql)
    if out is None:
        out = _converted[sql] = sql.replace("?", "%s")
    return out


def _error(e):
    if isinstance(e, psycopg.errors.IntegrityError):
        return IntegrityError(str(e).strip())
    return StoreError("PostgreSQL: %s" % str(e).strip())


class PostgresTx(Tx):
    dialect = "postgres"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, connection):
        self.connection = connection

    async def execute(self, sql, params=()):
        try:
            cursor = await self.connection.execute(_pg(sql), params or None)
        except psycopg.Error as e:
            raise _error(e) from e
        return cursor.rowcount

    async def fetchall(self, sql, params=()):
        try:
            cursor = await self.connection.execute(_pg(sql), params or None)
            return await cursor.fetchall()
        except psycopg.Error as e:
            raise _error(e) from e

    async def try_lock(self, name):
        row = await self.fetchone("SELECT pg_try_advisory_xact_lock(hashtext(?)) AS taken", (name,))
        return bool(row["taken"])

    async def lock(self, name):
        """Wait for the named lock; held until the transaction ends."""
        await self.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (name,))


class PostgresStore:
    dialect = "postgres"

    def __init__(self, url, pool_size=10):
        from psycopg_pool import AsyncConnectionPool

        self.url = redact(url)
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"options": "-c TimeZone=UTC", "row_factory": dict_row},
            configure=self._configure,
            open=False,
            name="flowcatalyst",
        )

    @staticmethod
    async def _configure(connection):
        connection.adapters.register_loader("timestamptz", _TimestampLoader)
        connection.adapters.register_loader("jsonb", _TextLoader)
        connection.adapters.register_loader("json", _TextLoader)

    async def open(self, timeout=10.0):
        try:
            await self._pool.open(wait=True, timeout=timeout)
        except Exception as e:  # psycopg_pool.PoolTimeout carries the connection error
            await self._pool.close()
            raise StoreError(
                "cannot connect to %s: %s" % (self.url, str(e).strip() or type(e).__name__)
            ) from e

    async def write(self, unit, *args):
        try:
            async with self._pool.connection() as connection:
                async with connection.transaction():
                    return await unit(PostgresTx(connection), *args)
        except psycopg.Error as e:
            raise _error(e) from e

    read = write  # a transaction of its own either way

    async def fetchall(self, sql, params=()):
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(_pg(sql), params or None)
                return await cursor.fetchall()
        except psycopg.Error as e:
            raise _error(e) from e

    async def fetchone(self, sql, params=()):
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def close(self):
        await self._pool.close()
