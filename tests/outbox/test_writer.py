"""The application-side outbox helpers (server/outbox/writer.py) on SQLite, PostgreSQL and
MariaDB: the rows they write, inside the caller's transaction, and that their payloads are
what the platform's batch endpoints accept."""

import io
import json
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx
import pytest

from flowcatalyst.server.outbox import (
    PENDING,
    create_table,
    dbapi,
    write_audit_log,
    write_dispatch_job,
    write_event,
    writer,
)
from flowcatalyst.server.outbox.schemacli import schema_main
from tests.support.platform import PlatformRunner

TYPE = "shop:orders:order:shipped"
INDEXES = {"idx_outbox_messages_pending", "idx_outbox_messages_stuck", "idx_outbox_client_pending"}  # the spec's names
INDEX_QUERIES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
    "postgres": "SELECT indexname FROM pg_indexes WHERE tablename = ?",
    "mysql": "SELECT DISTINCT index_name FROM information_schema.statistics"
    " WHERE table_schema = DATABASE() AND table_name = ?",
}


def query(conn, sql, params=()):
    """Rows (dicts) of `sql` written with `?` placeholders."""
    cursor = conn.cursor()
    try:
        cursor.execute(dbapi.adapt(sql, dbapi.dialect_of(conn)), params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        cursor.close()


def rows_seen_elsewhere(db):
    """The outbox rows another connection sees (committed ones), oldest first."""
    conn = db.connect()
    try:
        return query(conn, "SELECT * FROM outbox_messages ORDER BY created_at")
    finally:
        conn.close()


@pytest.fixture
def conn(outbox_db):
    """A connection to a database holding the outbox table (committed)."""
    conn = outbox_db.connect()
    create_table(conn)
    conn.commit()
    return conn


# -- the table ----------------------------------------------------------------------------------


def test_create_table_twice_keeps_one_table_with_its_indexes(outbox_db):
    conn = outbox_db.connect()
    create_table(conn)
    create_table(conn)  # MySQL: "duplicate key name" for each index, tolerated
    conn.commit()
    names = {r[next(iter(r))] for r in query(conn, INDEX_QUERIES[outbox_db.dialect], ("outbox_messages",))}  # fmt: skip
    assert INDEXES <= names
    assert query(conn, "SELECT COUNT(*) AS n FROM outbox_messages") == [{"n": 0}]


def test_create_table_with_a_table_name(outbox_db):
    conn = outbox_db.connect()
    create_table(conn, table="app_outbox")
    create_table(conn, table="app_outbox")
    row_id = write_event(conn, TYPE, {}, table="app_outbox")
    conn.commit()
    assert query(conn, "SELECT id FROM app_outbox") == [{"id": row_id}]


# -- the rows -----------------------------------------------------------------------------------


def check_row(row, kind, group, client):
    """The columns every written row has; its payload, parsed."""
    assert len(row["id"]) == 13
    assert (row["type"], row["message_group"], row["client_id"]) == (kind, group, client)
    assert (row["status"], row["retry_count"]) == (PENDING, 0)
    assert row["created_at"] == row["updated_at"]
    assert row["error_message"] is None and row["headers"] is None
    assert row["payload_size"] == len(row["payload"].encode("utf-8"))
    return json.loads(row["payload"])


def test_an_event_row(outbox_db, conn):
    row_id = write_event(
        conn,
        TYPE,
        {"orderId": "o-1", "note": "größer", "lines": [1, 2]},
        source="shop",
        subject="order/o-1",
        message_group="order-o-1",
        correlation_id="c-1",
        causation_id="k-1",
        deduplication_id="d-1",
        client_id="clt_0HZXEQ5Y8JY5Z",
        context_data={"tenant": "acme", "attempt": 2},
    )
    conn.commit()
    [row] = rows_seen_elsewhere(outbox_db)
    assert row["id"] == row_id
    payload = check_row(row, "EVENT", "order-o-1", "clt_0HZXEQ5Y8JY5Z")
    assert dbapi.epoch(payload.pop("time")) == dbapi.epoch(row["created_at"])
    assert payload == {
        "specVersion": "1.0",
        "type": TYPE,
        "source": "shop",
        "subject": "order/o-1",
        "data": {"orderId": "o-1", "note": "größer", "lines": [1, 2]},
        "correlationId": "c-1",
        "causationId": "k-1",
        "deduplicationId": "d-1",
        "messageGroup": "order-o-1",
        "clientId": "clt_0HZXEQ5Y8JY5Z",
        "contextData": [{"key": "tenant", "value": "acme"}, {"key": "attempt", "value": "2"}],
    }
    assert row["payload_size"] > len(row["payload"])  # bytes, not characters


def test_an_event_with_only_what_is_required(outbox_db, conn):
    happened = datetime(2026, 5, 24, 8, 30, 0, 123456, tzinfo=timezone.utc)
    write_event(conn, TYPE, None, time=happened)
    conn.commit()
    [row] = rows_seen_elsewhere(outbox_db)
    payload = check_row(row, "EVENT", None, None)
    assert payload == {"specVersion": "1.0", "type": TYPE, "time": "2026-05-24T08:30:00.123456Z"}


def test_a_dispatch_job_row(outbox_db, conn):
    row_id = write_dispatch_job(
        conn,
        "shop:orders:order:shipped",
        "https://hooks.example.com/orders",
        {"orderId": "o-1"},
        source="shop",
        kind="task",
        mode="BLOCKONERROR",
        timeout_seconds=10,
        max_retries=5,
        data_only=False,
        sequence=3,
        metadata=[{"key": "region", "value": "eu"}],
        message_group="order-o-1",
        client_id="clt_0HZXEQ5Y8JY5Z",
    )
    conn.commit()
    [row] = rows_seen_elsewhere(outbox_db)
    assert check_row(row, "DISPATCH_JOB", "order-o-1", "clt_0HZXEQ5Y8JY5Z") == {
        "id": row_id,
        "code": "shop:orders:order:shipped",
        "targetUrl": "https://hooks.example.com/orders",
        "payload": '{"orderId":"o-1"}',
        "dataOnly": False,
        "source": "shop",
        "kind": "TASK",
        "mode": "BLOCK_ON_ERROR",
        "sequence": 3,
        "timeoutSeconds": 10,
        "maxRetries": 5,
        "metadata": [{"key": "region", "value": "eu"}],
        "messageGroup": "order-o-1",
        "clientId": "clt_0HZXEQ5Y8JY5Z",
    }


def test_an_audit_log_row(outbox_db, conn):
    write_audit_log(
        conn,
        "Order",
        "o-1",
        "ShipOrderCommand",
        operation_data={"carrier": "dhl"},
        principal_id="prn_0HZXEQ5Y8JY5Z",
        performed_at="2026-05-24T10:30:00+02:00",
        application_code="shop",
        client_id="clt_0HZXEQ5Y8JY5Z",
        message_group="order-o-1",
    )
    conn.commit()
    [row] = rows_seen_elsewhere(outbox_db)
    assert check_row(row, "AUDIT_LOG", "order-o-1", "clt_0HZXEQ5Y8JY5Z") == {
        "entityType": "Order",
        "entityId": "o-1",
        "operation": "ShipOrderCommand",
        "operationData": {"carrier": "dhl"},
        "principalId": "prn_0HZXEQ5Y8JY5Z",
        "performedAt": "2026-05-24T08:30:00.000000Z",
        "applicationCode": "shop",
        "clientCode": "clt_0HZXEQ5Y8JY5Z",
    }


# -- the caller's transaction -------------------------------------------------------------------


def test_rows_appear_when_the_caller_commits(outbox_db, conn):
    write_event(conn, TYPE, {"n": 1})
    write_audit_log(conn, "Order", "o-1", "ShipOrderCommand")
    assert rows_seen_elsewhere(outbox_db) == []  # the helpers did not commit
    conn.commit()
    assert [r["type"] for r in rows_seen_elsewhere(outbox_db)] == ["EVENT", "AUDIT_LOG"]


def test_a_rolled_back_transaction_leaves_no_row(outbox_db, conn):
    write_event(conn, TYPE, {"n": 1})
    write_dispatch_job(conn, "task:x:y:z", "http://127.0.0.1:9/hook", "body")
    conn.rollback()
    assert rows_seen_elsewhere(outbox_db) == []
    assert query(conn, "SELECT COUNT(*) AS n FROM outbox_messages") == [{"n": 0}]


def test_rows_of_one_transaction_keep_their_order(outbox_db, conn, monkeypatch):
    frozen = time.time_ns()
    monkeypatch.setattr(writer, "time_ns", lambda: frozen)  # a clock that does not move
    written = []
    for i in range(100):
        if i % 3 == 0:
            written.append(write_event(conn, TYPE, {"i": i}, message_group="g"))
        elif i % 3 == 1:
            written.append(write_dispatch_job(conn, "c:o:d:e", "http://h/x", {"i": i}, message_group="g"))  # fmt: skip
        else:
            written.append(write_audit_log(conn, "Order", str(i), "Op", message_group="g"))
    conn.commit()
    rows = rows_seen_elsewhere(outbox_db)
    assert [r["id"] for r in rows] == written
    stamps = [dbapi.epoch(r["created_at"]) for r in rows]
    assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False)), "not strictly increasing"


# -- bad arguments ------------------------------------------------------------------------------

BAD = [
    (write_event, ("shop:orders:order", {}), {}, "has 3 segments"),
    (write_event, ("shop::order:shipped", {}), {}, "empty subdomain segment"),
    (write_event, (None, {}), {}, "the code is required"),
    (write_event, (TYPE, {}), {"source": 42}, "source must be a string, got int"),
    (write_event, (TYPE, {}), {"message_group": "g" * 201}, "message_group is longer than 200"),
    (write_event, (TYPE, {}), {"client_id": "c" * 18}, "client_id is longer than 17"),
    (write_event, (TYPE, {}), {"time": datetime(2026, 1, 1)}, "time must be timezone-aware"),
    (write_event, (TYPE, {}), {"time": "yesterday"}, "time: 'yesterday' is not an RFC 3339"),
    (write_event, (TYPE, {}), {"context_data": "a=b"}, "context_data must be a dict or a list"),
    (
        write_event,
        (TYPE, {}),
        {"context_data": [{"value": "v"}]},
        "context_data[0] must be a dict with a key",
    ),  # fmt: skip
    (write_event, (TYPE, {}), {"table": "outbox; DROP TABLE x"}, "is not a table name"),
    (write_dispatch_job, ("", "http://h/x", "b"), {}, "code must not be empty"),
    (
        write_dispatch_job,
        ("c:o:d:e", "ftp://h/x", "b"),
        {},
        "target_url must be an http:// or https:// URL",
    ),  # fmt: skip
    (
        write_dispatch_job,
        ("c:o:d:e", "http://h/a b", "b"),
        {},
        "target_url must not contain white space",
    ),  # fmt: skip
    (write_dispatch_job, ("c:o:d:e", "http://h/x", None), {}, "payload is required"),
    (
        write_dispatch_job,
        ("c:o:d:e", "http://h/x", {"x": {1, 2}}),
        {},
        "payload is not JSON-serialisable",
    ),  # fmt: skip
    (
        write_dispatch_job,
        ("c:o:d:e", "http://h/x", "b"),
        {"mode": "FIFO"},
        "mode must be one of IMMEDIATE, NEXT_ON_ERROR, BLOCK_ON_ERROR",
    ),  # fmt: skip
    (
        write_dispatch_job,
        ("c:o:d:e", "http://h/x", "b"),
        {"kind": "JOB"},
        "kind must be one of EVENT, TASK",
    ),  # fmt: skip
    (
        write_dispatch_job,
        ("c:o:d:e", "http://h/x", "b"),
        {"timeout_seconds": 0},
        "timeout_seconds must be between 1 and 900",
    ),  # fmt: skip
    (
        write_dispatch_job,
        ("c:o:d:e", "http://h/x", "b"),
        {"max_retries": True},
        "max_retries must be an integer, got bool",
    ),  # fmt: skip
    (
        write_dispatch_job,
        ("c:o:d:e", "http://h/x", "b"),
        {"data_only": "yes"},
        "data_only must be True or False",
    ),  # fmt: skip
    (write_audit_log, (None, "o-1", "Op"), {}, "entity_type is required"),
    (write_audit_log, ("Order", 17, "Op"), {}, "entity_id must be a string, got int"),
    (
        write_audit_log,
        ("Order", "o-1", "Op"),
        {"operation_data": float("nan")},
        "operation_data is not JSON-serialisable",
    ),  # fmt: skip
]


def test_bad_arguments_are_refused_and_write_nothing(outbox_db, conn):
    for function, args, kwargs, message in BAD:
        with pytest.raises(ValueError) as caught:
            function(conn, *args, **kwargs)
        assert message in str(caught.value), (function.__name__, args, kwargs, str(caught.value))
    with pytest.raises(ValueError, match="is not JSON-serialisable"):
        write_event(conn, TYPE, {"when": datetime.now()})
    conn.commit()
    assert rows_seen_elsewhere(outbox_db) == []


@pytest.mark.parametrize("conn", [object(), "sqlite://app.db", sqlite3.Row])
def test_an_unknown_connection_is_a_type_error(conn):
    for call in (
        lambda: write_event(conn, TYPE, {}),
        lambda: write_dispatch_job(conn, "c:o:d:e", "http://h/x", "b"),
        lambda: write_audit_log(conn, "Order", "o-1", "Op"),
        lambda: create_table(conn),
    ):
        with pytest.raises(TypeError, match="sqlite3 .* psycopg 3 .* PyMySQL"):
            call()


# -- fc-server outbox schema --------------------------------------------------------------------


def test_the_printed_schema_runs_on_its_database(outbox_db):
    out = io.StringIO()
    assert schema_main(["--db", outbox_db.dialect, "--table", "orders_outbox"], out) == 0
    statements = [s.strip() for s in out.getvalue().split(";") if s.strip()]
    assert len(statements) == 4
    conn = outbox_db.connect()
    cursor = conn.cursor()
    for statement in statements:
        cursor.execute(statement)
    conn.commit()
    create_table(conn, table="orders_outbox")  # the helper agrees with the script
    write_event(conn, TYPE, {"ok": True}, table="orders_outbox")
    conn.commit()
    assert query(conn, "SELECT type FROM orders_outbox") == [{"type": "EVENT"}]


def test_schema_command_arguments(capsys):
    out = io.StringIO()
    assert schema_main(["--help"], out) == 0
    assert out.getvalue().startswith("usage: fc-server outbox schema --db sqlite|postgres|mysql")
    for argv, error in (
        (["--db", "oracle"], "unknown database 'oracle': one of sqlite, postgres, mysql"),
        ([], "--db is required"),
        (["--db"], "--db needs a value"),
        (["--db=sqlite", "--table", "1x"], "table '1x' is not a table name"),
        (["--dbs", "sqlite"], "unknown argument '--dbs'"),
    ):
        out = io.StringIO()
        assert schema_main(argv, out) == 2, argv
        assert out.getvalue() == ""
        assert error in capsys.readouterr().err


# -- the platform accepts the payloads ----------------------------------------------------------


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("platform")
    runner = PlatformRunner(
        tmp, "sqlite://%s" % (tmp / "platform.db"), router_enabled=False, scheduler_enabled=False
    ).start()
    yield runner
    runner.stop()


def forward(platform, path, row):
    """POST one row's payload as the outbox processor does; the platform's result."""
    response = httpx.post(platform.url(path), json={"items": [json.loads(row["payload"])]})
    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert result["status"] == "SUCCESS", result
    return result["id"]


def test_the_platform_accepts_what_the_helpers_write(outbox_db, conn, platform):
    write_event(
        conn, TYPE, {"orderId": "o-1"}, source="shop", message_group="order-o-1",
        correlation_id="c-1", context_data={"tenant": "acme"}, client_id="clt_0HZXEQ5Y8JY5Z",
    )  # fmt: skip
    job_row = write_dispatch_job(
        conn, "shop:orders:order:shipped", "https://hooks.example.com/o", {"orderId": "o-1"},
        source="shop", kind="TASK", mode="NEXT_ON_ERROR", timeout_seconds=10, max_retries=2,
        metadata={"region": "eu"}, message_group="order-o-1", client_id="clt_0HZXEQ5Y8JY5Z",
        idempotency_key="k-%s" % outbox_db.dialect,
    )  # fmt: skip
    write_audit_log(
        conn, "Order", "o-1", "ShipOrderCommand", operation_data={"carrier": "dhl"},
        principal_id="prn_1", client_id="clt_0HZXEQ5Y8JY5Z",
    )  # fmt: skip
    conn.commit()
    event_row, job, audit_row = rows_seen_elsewhere(outbox_db)

    event_id = forward(platform, "/api/events/batch", event_row)
    event = httpx.get(platform.url("/api/events/%s" % event_id)).json()
    assert event["data"] == {"orderId": "o-1"}  # an object, not a string
    assert (event["messageGroup"], event["clientId"]) == ("order-o-1", "clt_0HZXEQ5Y8JY5Z")
    assert event["time"] == json.loads(event_row["payload"])["time"]

    assert forward(platform, "/api/dispatch-jobs/batch", job) == job_row  # the row id is the job's
    assert forward(platform, "/api/dispatch-jobs/batch", job) == job_row  # a resend: still one job
    stored = httpx.get(platform.url("/api/dispatch-jobs/%s/raw" % job_row)).json()
    assert (stored["payload"], stored["mode"], stored["kind"]) == ('{"orderId":"o-1"}', "NEXT_ON_ERROR", "TASK")  # fmt: skip

    audit_id = forward(platform, "/api/audit-logs/batch", audit_row)
    log = httpx.get(platform.url("/api/audit-logs/%s" % audit_id)).json()
    assert (log["operationJson"], log["clientId"]) == ({"carrier": "dhl"}, "clt_0HZXEQ5Y8JY5Z")


# -- dbapi ---------------------------------------------------------------------------------------


def test_database_urls():
    assert [
        dbapi.dialect_of_url(u) for u in ("sqlite:///a.db", "postgres://h/d", "mariadb://h/d")
    ] == [
        "sqlite",
        "postgres",
        "mysql",
    ]
    with pytest.raises(ValueError, match="use sqlite://PATH, postgresql://... or mysql://"):
        dbapi.dialect_of_url("oracle://h/d")
    with pytest.raises(ValueError, match="has no file path"):
        dbapi.connect("sqlite://")
    params = dbapi.mysql_parameters("mysql://app:p%40ss@db.local:3307/shop?charset=utf8")
    assert {k: params[k] for k in ("host", "port", "user", "password", "database", "charset")} == {
        "host": "db.local",
        "port": 3307,
        "user": "app",
        "password": "p@ss",
        "database": "shop",
        "charset": "utf8",
    }
    with pytest.raises(ValueError, match="unknown option ssl_mode"):
        dbapi.mysql_parameters("mysql://h/d?ssl_mode=on")


def test_sqlite_urls_name_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for url, path in (("sqlite://%s/abs.db" % tmp_path, tmp_path / "abs.db"), ("sqlite://rel.db", tmp_path / "rel.db")):  # fmt: skip
        conn = dbapi.connect(url)
        create_table(conn)
        conn.close()
        assert path.exists()


def test_timestamps_read_back_are_the_moment_written(outbox_db, conn):
    moment = datetime(2026, 5, 24, 8, 30, 0, 123456, tzinfo=timezone.utc)
    stamp = dbapi.timestamp(outbox_db.dialect, moment)
    write_event(conn, TYPE, {})
    cursor = conn.cursor()
    cursor.execute(dbapi.adapt("UPDATE outbox_messages SET created_at = ?", outbox_db.dialect), (stamp,))  # fmt: skip
    conn.commit()
    [row] = rows_seen_elsewhere(outbox_db)
    assert dbapi.epoch(row["created_at"]) == moment.timestamp()


def test_importing_the_package_loads_no_driver():
    code = (
        "import sys, flowcatalyst.server.outbox; "
        "print([m for m in ('psycopg', 'pymysql', 'microdot') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
