"""The platform store on both databases: migrations, the shared SQL dialect, units of work,
and the pure parts the rest builds on (TSIDs, timestamps, matching, the callback token)."""

import asyncio
import os
import re
import sqlite3

import pytest

from flowcatalyst.server.platform import clock, ids, matching
from flowcatalyst.server.platform.dispatchauth import DispatchAuth
from flowcatalyst.server.platform.store import IntegrityError, StoreError, open_store, redact
from flowcatalyst.server.platform.store import migrate as migrations


def run(coro):
    return asyncio.run(coro)


def test_migrations_apply_once_and_are_recorded(database_url):
    async def go():
        store = await open_store(database_url)
        try:
            rows = await store.fetchall(
                "SELECT version, name, checksum FROM fc_schema_migrations ORDER BY version"
            )
            assert [(r["version"], r["name"]) for r in rows] == [
                (v, n) for v, n, _ in migrations.available()
            ]
            assert await migrations.migrate(store) == []  # nothing left to do
        finally:
            await store.close()
        again = await open_store(database_url)  # a second start applies nothing and fails nothing
        await again.close()

    run(go())


def test_an_unknown_or_edited_migration_is_refused(database_url, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_one.sql").write_text("CREATE TABLE t1 (id INTEGER PRIMARY KEY);\n")
    (folder / "0002_two.sql").write_text("CREATE TABLE t2 (id INTEGER PRIMARY KEY, at {TS});\n")

    async def go():
        store = await open_store(database_url, migrate=False)
        try:
            assert await migrations.migrate(store, str(folder)) == [1, 2]
            (folder / "0001_one.sql").write_text(
                "CREATE TABLE t1 (id INTEGER PRIMARY KEY, x INTEGER);\n"
            )
            with pytest.raises(StoreError, match="0001_one.sql differs"):
                await migrations.migrate(store, str(folder))
            (folder / "0001_one.sql").write_text("CREATE TABLE t1 (id INTEGER PRIMARY KEY);\n")
            (folder / "0002_two.sql").unlink()
            with pytest.raises(
                StoreError, match="migration 2 .two., which this program does not know"
            ):
                await migrations.migrate(store, str(folder))
        finally:
            await store.close()

    run(go())


def test_a_failed_migration_leaves_nothing_behind(database_url, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_bad.sql").write_text(
        "CREATE TABLE half (id INTEGER PRIMARY KEY);\nCREATE TABLE half (id INTEGER);\n"
    )

    async def go():
        store = await open_store(database_url, migrate=False)
        try:
            with pytest.raises(StoreError):
                await migrations.migrate(store, str(folder))
            (folder / "0001_bad.sql").write_text("CREATE TABLE half (id INTEGER PRIMARY KEY);\n")
            assert await migrations.migrate(store, str(folder)) == [1]  # `half` was not left over
        finally:
            await store.close()

    run(go())


def test_values_round_trip_alike(database_url):
    """Timestamps come back as the fixed-width strings they went in as, JSON as its text,
    booleans as something bool() reads, on both databases."""
    stamp = "2026-05-24T08:30:00.123400Z"

    async def go():
        store = await open_store(database_url)
        try:

            async def insert(tx):
                return await tx.insert(
                    "msg_events",
                    ("id", "type", "source", "time", "data", "created_at"),
                    [
                        (ids.tsid(), "a:b:c:d", "s", stamp, '{"n": 1}', stamp),
                        (ids.tsid(), "a:b:c:e", "s", "2026-05-24T08:30:00.000000Z", None, stamp),
                    ],
                    "RETURNING id, time, data",
                )

            rows = await store.write(insert)
            assert [r["time"] for r in rows] == [stamp, "2026-05-24T08:30:00.000000Z"]
            assert rows[0]["data"].replace(" ", "") == '{"n":1}' and rows[1]["data"] is None
            found = await store.fetchall(
                "SELECT id FROM msg_events WHERE time > ? ORDER BY time",
                ("2026-05-24T08:30:00.100000Z",),
            )
            assert [r["id"] for r in found] == [rows[0]["id"]]
            row = await store.fetchone("SELECT client_scoped FROM msg_event_types WHERE 1 = 0")
            assert row is None
        finally:
            await store.close()

    run(go())


def test_a_unit_of_work_commits_whole_or_not_at_all(database_url):
    async def go():
        store = await open_store(database_url)
        try:

            async def two_then_fail(tx):
                await tx.execute(
                    "UPDATE fc_versions SET value = value + 1 WHERE name = 'subscriptions'"
                )
                await tx.execute(
                    "INSERT INTO fc_versions (name, value) VALUES ('subscriptions', 1)"
                )  # duplicate key

            with pytest.raises(IntegrityError):
                await store.write(two_then_fail)
            row = await store.fetchone("SELECT value FROM fc_versions WHERE name = 'subscriptions'")
            assert row["value"] == 0

            async def bump(tx):
                return await tx.execute(
                    "UPDATE fc_versions SET value = value + 1 WHERE name = 'subscriptions'"
                )

            assert (
                await asyncio.gather(*(store.write(bump) for _ in range(20))) == [1] * 20
            )  # concurrent units
            assert (
                await store.fetchone("SELECT value FROM fc_versions WHERE name = 'subscriptions'")
            )["value"] == 20
        finally:
            await store.close()

    run(go())


def test_a_unit_that_waits_on_something_else_is_refused_on_sqlite(tmp_path):
    async def go():
        store = await open_store("sqlite://%s" % (tmp_path / "p.db"))
        try:

            async def sleeps(tx):
                await asyncio.sleep(0)

            with pytest.raises(RuntimeError, match="awaited something other"):
                await store.write(sleeps)
        finally:
            await store.close()

    run(go())


def test_large_batches_are_split_under_the_parameter_limit(database_url):
    async def go():
        store = await open_store(database_url)
        try:
            now = clock.now()
            rows = [
                (ids.tsid(), "a:b:c:d", "s", now, "{}", now) for _ in range(6000)
            ]  # 36,000 parameters

            async def insert(tx):
                return await tx.insert(
                    "msg_events", ("id", "type", "source", "time", "data", "created_at"), rows
                )

            assert await store.write(insert) == 6000
        finally:
            await store.close()

    run(go())


def test_open_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(StoreError, match="must start with sqlite:// or postgresql://"):
        run(open_store("mysql://x"))
    with pytest.raises(StoreError, match="does not exist"):
        run(open_store("sqlite://%s" % (tmp_path / "nowhere" / "p.db")))
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"x" * 4096)
    with pytest.raises(StoreError, match="cannot open"):
        run(open_store("sqlite://%s" % bad))
    with pytest.raises(StoreError, match=r"cannot connect to postgresql://fc:\*\*\*@127.0.0.1:1/x"):
        run(open_store("postgresql://fc:secret@127.0.0.1:1/x?connect_timeout=1"))
    assert redact("postgresql://u:p@h/db") == "postgresql://u:***@h/db"


def test_sqlite_store_files_are_shared_not_locked(tmp_path):
    """Several server processes may open one platform database (unlike a queue database)."""

    async def go():
        url = "sqlite://%s" % (tmp_path / "p.db")
        a = await open_store(url)
        b = await open_store(url)
        await a.close()
        await b.close()

    run(go())
    assert (
        sqlite3.connect(str(tmp_path / "p.db")).execute("PRAGMA journal_mode").fetchone()[0]
        == "wal"
    )


# -- the pure parts -----------------------------------------------------------------------------


def test_tsids_are_13_crockford_characters_in_creation_order():
    made = [ids.tsid() for _ in range(5000)]
    assert all(re.fullmatch("[0-9A-HJKMNP-TV-Z]{13}", t) for t in made)
    assert made == sorted(made) and len(set(made)) == len(made)
    assert abs(ids.timestamp_ms(made[-1]) / 1000 - clock.to_epoch(clock.now())) < 5
    typed = ids.typed(ids.SUBSCRIPTION)
    assert typed.startswith("sub_") and len(typed) == 17
    # spec §1.1's example decodes to late 2024 with the 2020 epoch
    assert clock.format_epoch(ids.timestamp_ms("0HZXEQ5Y8JY5Z") / 1000).startswith("2024-11-24")
    with pytest.raises(ValueError):
        ids.timestamp_ms("0HZXEQ5Y8JY5U")


def test_timestamps():
    assert clock.parse("2026-05-24T10:30:00+02:00") == "2026-05-24T08:30:00.000000Z"
    assert clock.parse("2026-05-24T08:30:00.123Z") == "2026-05-24T08:30:00.123000Z"
    assert clock.parse("2026-05-24 08:30:00") == "2026-05-24T08:30:00.000000Z"
    assert clock.milliseconds("2026-05-24T08:30:00.123456Z") == "2026-05-24T08:30:00.123Z"
    assert clock.from_postgres("2026-05-24 08:30:00.12+00") == "2026-05-24T08:30:00.120000Z"
    assert clock.after(10, "2026-05-24T08:30:00.000000Z") == "2026-05-24T08:30:10.000000Z"
    for bad in ("", "yesterday", 5):
        with pytest.raises(ValueError):
            clock.parse(bad)


@pytest.mark.parametrize(
    "pattern, code, expected",
    [
        ("orders:fulfillment:shipment:shipped", "orders:fulfillment:shipment:shipped", True),
        ("orders:*:*:*", "orders:fulfillment:shipment:shipped", True),
        ("orders:*:shipment:*", "orders:fulfillment:invoice:shipped", False),
        ("*:*:*:*", "a:b:c:d", True),
        ("orders:*", "orders:fulfillment:shipment:shipped", False),  # no prefix wildcards
        ("orders:*:*:*", "orders:a:b", False),  # segment counts differ
        ("demo.order.created", "demo.order.created", True),  # a dotted code is one segment
        ("demo.*", "demo.order.created", False),
    ],
)
def test_event_type_patterns(pattern, code, expected):
    assert matching.type_matches(pattern, code) is expected


def test_client_matching_and_code_checks():
    assert matching.client_matches(None, "clt_1") and matching.client_matches(None, None)
    assert matching.client_matches("clt_1", "clt_1") and not matching.client_matches("clt_1", None)
    assert matching.code_problem("a:b:c:d") is None
    assert "3 segments" in matching.code_problem("a:b:c")
    assert "empty subdomain" in matching.code_problem("a::c:d")
    assert matching.split_code("orders:sales:order:created") == ("orders", "sales", "order")
    assert matching.split_code("demo.order.created") == ("demo.order.created", None, None)


def test_dispatch_token_vectors():
    """spec §4.4's computed vectors."""
    auth = DispatchAuth("MpU3dI07kjZmZGROrElYfDXQgab30e3wr0KTnxQbePg=\n")
    token = "b199f7e711ff3901d593a2c3f2209acc0b04c2984fd608424c77c566af3c6eec"
    assert auth.token("0HZXEQ5Y8JY5Z") == token
    assert auth.verify("0HZXEQ5Y8JY5Z", token) and auth.verify("0HZXEQ5Y8JY5Z", token.upper())
    assert not auth.verify("0HZXEQ5Y8JY5A", token) and not auth.verify("0HZXEQ5Y8JY5Z", None)
    with pytest.raises(ValueError, match="FLOWCATALYST_APP_KEY"):
        DispatchAuth("  ")


def test_the_schema_file_names_are_versions():
    names = os.listdir(migrations.DIRECTORY)
    assert all(migrations.FILE_NAME.match(n) for n in names if n.endswith(".sql"))
