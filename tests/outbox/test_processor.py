"""The outbox processor against the real platform on loopback, on SQLite, PostgreSQL and
MariaDB application databases: rows forwarded and deleted, per-group order with two
processors at once, per-item failures, an outage of the platform, a processor killed
mid-batch, and rows that only count once the application commits."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flowcatalyst.server.outbox import (
    create_table,
    write_audit_log,
    write_dispatch_job,
    write_event,
)
from flowcatalyst.server.outbox.app import OutboxServer
from flowcatalyst.server.outbox.settings import OutboxSettings
from tests.support.edgeapp import EdgeRunner, eventually
from tests.support.platform import PlatformRunner
from tests.support.ports import free_port
from tests.support.target import Target

ROOT = Path(__file__).resolve().parents[2]
TYPE = "shop:orders:order:created"
FAST = {
    "poll_interval": 0.02,
    "recovery_interval": 0.2,
    "retry_backoff": (0.2,),
    "shutdown_timeout": 2.0,
}


def outbox(tmp_path, db, base_url, name="outbox", **settings):
    values = dict(FAST, db_url=db.url, api_base_url=base_url)
    values.update(settings)
    return EdgeRunner(
        tmp_path, name=name, app_class=OutboxServer, settings_class=OutboxSettings, **values
    )


@pytest.fixture
def platform(tmp_path):
    with PlatformRunner(
        tmp_path, None, router_enabled=False, scheduler_enabled=False, stream_enabled=False
    ) as p:
        yield p


def table_rows(db):
    conn = db.connect()
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT id, status, retry_count, error_message, message_group FROM outbox_messages"
        )
        rows = cur.fetchall()
        conn.rollback()
        return rows
    finally:
        conn.close()


def write(db, rows):
    """Write `rows` ((group, n) pairs) as events in one committed transaction."""
    conn = db.connect()
    create_table(conn)
    for group, n in rows:
        write_event(conn, TYPE, {"group": group, "n": n}, source="app", message_group=group)
    conn.commit()
    conn.close()


def events_by_group(platform):
    """{group: [n, ...]} in the order the platform stored them (event ids are time-ordered)."""
    out = {}
    for row in platform.query("SELECT data FROM msg_events ORDER BY id"):
        data = json.loads(row["data"])
        out.setdefault(data["group"], []).append(data["n"])
    return out


def test_rows_of_every_type_are_forwarded_and_deleted(tmp_path, outbox_db, platform):
    conn = outbox_db.connect()
    create_table(conn)
    write_event(conn, TYPE, {"order": 1}, source="app", message_group="o-1")
    write_dispatch_job(conn, "shop:orders:order:created", "http://127.0.0.1:9/hook", {"x": 1})
    write_audit_log(conn, "Order", "o-1", "CreateOrder", operation_data={"total": 3})
    conn.commit()
    conn.close()
    with outbox(tmp_path, outbox_db, platform.url("")) as processor:
        eventually(lambda: not table_rows(outbox_db), what="the outbox emptied")
        metrics = httpx.get(processor.url("/metrics")).text
        assert 'fc_outbox_items_total{type="EVENT",status="SUCCESS"} 1' in metrics
        assert httpx.get(processor.url("/health/ready")).json() == {"status": "READY"}
    assert platform.query("SELECT COUNT(*) AS n FROM msg_events")[0]["n"] == 1
    assert platform.query("SELECT COUNT(*) AS n FROM msg_dispatch_jobs")[0]["n"] == 1
    assert (
        platform.query("SELECT COUNT(*) AS n FROM aud_logs WHERE entity_type = 'Order'")[0]["n"]
        == 1
    )


def test_two_processors_keep_each_group_in_order(tmp_path, outbox_db, platform):
    rows = [("g%d" % g, n) for n in range(40) for g in range(5)]  # groups interleaved
    write(outbox_db, rows)
    small = {"api_batch_size": 7, "poll_batch_size": 20, "max_concurrent_groups": 3}
    with (
        outbox(tmp_path, outbox_db, platform.url(""), name="a", **small),
        outbox(tmp_path, outbox_db, platform.url(""), name="b", **small),
    ):
        eventually(lambda: not table_rows(outbox_db), timeout=60, what="the outbox emptied")
    got = events_by_group(platform)
    assert got == {"g%d" % g: list(range(40)) for g in range(5)}  # all, once, in order


def test_per_item_failures_by_status_and_a_blocked_group(tmp_path, outbox_db, platform):
    write(outbox_db, [("ok", 0)])
    conn = outbox_db.connect()
    cur = conn.cursor()
    insert = "INSERT INTO outbox_messages (id, type, message_group, payload, status, retry_count, created_at, updated_at) VALUES (%s)"
    marks = ", ".join(["?" if outbox_db.dialect == "sqlite" else "%s"] * 8)
    from flowcatalyst.server.outbox import dbapi

    def raw(row_id, group, payload, seconds):
        stamp = dbapi.timestamp(outbox_db.dialect, time.time() + seconds)
        cur.execute(insert % marks, (row_id, "EVENT", group, payload, 0, 0, stamp, stamp))

    raw("BAD00000000001", "blocked", json.dumps({"type": "not-a-code", "data": {}}), -2)
    raw("BAD00000000002", None, "{not json", -1)
    conn.commit()
    conn.close()
    write(outbox_db, [("blocked", 1), ("free", 0), ("free", 1)])
    with outbox(tmp_path, outbox_db, platform.url("")) as processor:
        eventually(
            lambda: (
                sorted((r[0], r[1]) for r in table_rows(outbox_db) if r[1] != 0)
                == [("BAD00000000001", 2), ("BAD00000000002", 2)]
            ),
            what="the two bad rows kept as BAD_REQUEST",
        )
        eventually(lambda: len(table_rows(outbox_db)) == 3, what="the good rows forwarded")
        by_id = {r[0]: r for r in table_rows(outbox_db)}
        assert "type" in by_id["BAD00000000001"][3] and "segment" in by_id["BAD00000000001"][3]
        assert "not JSON" in by_id["BAD00000000002"][3]
        # the row behind the failure in its group waits; the other groups went on
        assert [r[4] for r in table_rows(outbox_db) if r[1] == 0] == ["blocked"]
        assert events_by_group(platform) == {"ok": [0], "free": [0, 1]}
        blocked = httpx.get(processor.url("/outbox/groups/blocked")).json()["blocked"]
        assert [(b["group"], b["blockedItemId"], b["status"]) for b in blocked] == [
            ("blocked", "BAD00000000001", "BAD_REQUEST")
        ]
        # an operator fixes the row and unblocks the group: it goes on, in order
        conn = outbox_db.connect()
        fixed = json.dumps({"type": TYPE, "source": "app", "data": {"group": "blocked", "n": 0}})
        conn.cursor().execute(
            "UPDATE outbox_messages SET payload = %s WHERE id = %s".replace(
                "%s", "?" if outbox_db.dialect == "sqlite" else "%s"
            ),
            (fixed, "BAD00000000001"),
        )
        conn.commit()
        conn.close()
        answer = httpx.post(processor.url("/outbox/groups/blocked/unblock"))
        assert answer.json() == {"status": "UNBLOCKED", "requeued": 1}
        eventually(lambda: len(table_rows(outbox_db)) == 1, what="the group released")
        assert events_by_group(platform)["blocked"] == [0, 1]
        assert httpx.post(processor.url("/outbox/groups/nothing/unblock")).status_code == 404


def test_platform_down_then_back_rows_wait_then_flow_in_order(tmp_path, outbox_db):
    port = free_port()
    write(outbox_db, [("g", n) for n in range(30)])
    with outbox(tmp_path, outbox_db, "http://127.0.0.1:%d" % port, max_retries=2):
        time.sleep(1.5)  # several attempts against nothing
        rows = table_rows(outbox_db)
        assert len(rows) == 30 and {(r[1], r[2]) for r in rows} <= {(0, 0), (9, 0)}  # no retry used
        with PlatformRunner(
            tmp_path,
            None,
            port=port,
            router_enabled=False,
            scheduler_enabled=False,
            stream_enabled=False,
        ) as platform:
            eventually(lambda: not table_rows(outbox_db), timeout=20, what="the rows flowed")
            assert events_by_group(platform) == {"g": list(range(30))}


def test_killed_mid_batch_and_restarted_loses_nothing(tmp_path, outbox_db, platform):
    hang = Target().start()

    async def never(rec):
        import asyncio

        await asyncio.sleep(60)
        return 200, {}, {}

    hang.on("/api/events/batch", never)
    write(outbox_db, [("g%d" % g, n) for n in range(10) for g in range(3)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("FC_")}
    env.update(
        PYTHONPATH=str(ROOT),
        FC_OUTBOX_DB_URL=outbox_db.url,
        FC_API_BASE_URL=hang.url(""),
        FC_METRICS_PORT=str(free_port()),
        FC_OUTBOX_POLL_INTERVAL_MS="20",
        FC_LOG_LEVEL="WARN",
    )
    proc = subprocess.Popen([sys.executable, "-m", "flowcatalyst.server", "outbox"], env=env)
    try:
        hang.wait_for(1, "/api/events/batch", timeout=20)
        assert any(r[1] == 9 for r in table_rows(outbox_db))  # claimed: IN_PROGRESS
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        hang.stop()
    with outbox(tmp_path, outbox_db, platform.url(""), processing_timeout=0.5):
        eventually(lambda: not table_rows(outbox_db), timeout=20, what="recovered and forwarded")
    assert events_by_group(platform) == {"g%d" % g: list(range(10)) for g in range(3)}


def test_only_committed_rows_are_forwarded(tmp_path, outbox_db, platform):
    setup = outbox_db.connect()
    create_table(setup)
    setup.commit()
    with outbox(tmp_path, outbox_db, platform.url("")):
        app = outbox_db.connect()
        write_event(app, TYPE, {"group": "tx", "n": 0}, source="app")
        time.sleep(0.3)
        assert platform.query("SELECT COUNT(*) AS n FROM msg_events")[0]["n"] == 0  # not committed
        app.rollback()
        write_event(app, TYPE, {"group": "tx", "n": 1}, source="app")
        app.commit()
        eventually(lambda: not table_rows(outbox_db), what="the committed row")
    assert events_by_group(platform) == {"tx": [1]}


def test_embedded_in_the_platform_server(tmp_path, monkeypatch):
    """FC_OUTBOX_ENABLED: the platform server runs the processor too, sending to itself."""
    db_url = "sqlite://%s" % (tmp_path / "app.db")
    monkeypatch.setenv("FC_OUTBOX_DB_URL", db_url)
    monkeypatch.setenv("FC_OUTBOX_POLL_INTERVAL_MS", "20")
    monkeypatch.delenv("FC_API_BASE_URL", raising=False)

    class Db:
        url = db_url
        dialect = "sqlite"

        @staticmethod
        def connect():
            from flowcatalyst.server.outbox import dbapi

            return dbapi.connect(db_url)

    write(Db, [("g", 0), ("g", 1)])
    with PlatformRunner(
        tmp_path, None, router_enabled=False, scheduler_enabled=False, outbox_enabled=True
    ) as platform:
        eventually(lambda: not table_rows(Db), what="the rows forwarded by the embedded processor")
        assert events_by_group(platform) == {"g": [0, 1]}
