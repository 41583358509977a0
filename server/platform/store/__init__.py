"""The platform's store: one interface, two databases.

    store = await open_store("sqlite://./platform.db")          # or postgresql://...
    rows = await store.fetchall("SELECT id FROM msg_events WHERE type = ?", ("a:b:c:d",))
    count = await store.write(create_things, items)             # one transaction

A unit of work is `async def unit(tx, *args)`; everything it does through `tx` commits
together or not at all. SQL is written once, for both databases, with `?` placeholders and
the few differences spelled through `tx` (`tx.skip_locked`, `tx.try_lock`). Values: the
timestamps of clock.py as strings, JSON columns as JSON text, booleans as bool in and
0/1-or-bool out (use `bool()`), everything else as is. Rows come back as dicts.

A unit must not await anything but `tx` (no HTTP, no sleeping, no queue publish): on SQLite
the units of one event-loop turn share one transaction and commit (group commit), and run
without yielding to the event loop; on PostgreSQL a transaction that waits on something else
holds its locks meanwhile.
"""

from .base import IntegrityError, StoreError, chunked, marks, row_marks


async def open_store(url, synchronous="FULL", pool_size=10, migrate=True):
    """A store for `url` (`sqlite://PATH` or `postgresql://...`), its schema migrated."""
    if url.startswith("sqlite://"):
        from .sqlite import SqlitePlatformStore

        store = SqlitePlatformStore(url[len("sqlite://") :], synchronous)
    elif url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        store = PostgresStore(url, pool_size)
        await store.open()
    else:
        raise StoreError(
            "FC_DATABASE_URL must start with sqlite:// or postgresql://, got %r" % redact(url)
        )
    if migrate:
        from .migrate import migrate as run_migrations

        try:
            await run_migrations(store)
        except BaseException:
            await store.close()
            raise
    return store


def redact(url):
    """`url` without its password, for logs and errors."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return "%s%s%s:***@%s" % (scheme, sep, credentials.partition(":")[0], host)


__all__ = ["open_store", "redact", "StoreError", "IntegrityError", "marks", "row_marks", "chunked"]
