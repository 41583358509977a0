"""The application's outbox table (spec/platform.md §2.6, exact), for the three databases the
outbox supports, and its status codes.

Rows are written by the application inside its own transactions (writer.py) and claimed,
forwarded and deleted by the processor (processor.py). A successful row is deleted; a row
that failed for good keeps its status code and error, and, with block-on-error, holds its
message group until an operator deals with it.
"""

import re

PENDING = 0
SUCCESS = 1  # never stored: a forwarded row is deleted
BAD_REQUEST = 2
INTERNAL_ERROR = 3
UNAUTHORIZED = 4
FORBIDDEN = 5
GATEWAY_ERROR = 6
IN_PROGRESS = 9

STATUS_NAMES = {
    PENDING: "PENDING",
    SUCCESS: "SUCCESS",
    BAD_REQUEST: "BAD_REQUEST",
    INTERNAL_ERROR: "INTERNAL_ERROR",
    UNAUTHORIZED: "UNAUTHORIZED",
    FORBIDDEN: "FORBIDDEN",
    GATEWAY_ERROR: "GATEWAY_ERROR",
    IN_PROGRESS: "IN_PROGRESS",
}
STATUS_CODES = {name: code for code, name in STATUS_NAMES.items()}
RETRYABLE = (INTERNAL_ERROR, UNAUTHORIZED, GATEWAY_ERROR)

EVENT = "EVENT"
DISPATCH_JOB = "DISPATCH_JOB"
AUDIT_LOG = "AUDIT_LOG"
TYPES = (EVENT, DISPATCH_JOB, AUDIT_LOG)

DEFAULT_TABLE = "outbox_messages"
# The table name is spliced into SQL: a plain identifier, optionally schema-qualified.
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

SQLITE = "sqlite"
POSTGRES = "postgres"
MYSQL = "mysql"
DIALECTS = (SQLITE, POSTGRES, MYSQL)

_COLUMNS = {
    SQLITE: """    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    message_group TEXT,
    payload TEXT NOT NULL,
    status INTEGER NOT NULL DEFAULT 0,
    retry_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    error_message TEXT,
    client_id TEXT,
    payload_size INTEGER,
    headers TEXT""",
    POSTGRES: """    id VARCHAR(26) PRIMARY KEY,
    type VARCHAR(20) NOT NULL,
    message_group VARCHAR(255),
    payload TEXT NOT NULL,
    status SMALLINT NOT NULL DEFAULT 0,
    retry_count SMALLINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    error_message TEXT,
    client_id VARCHAR(26),
    payload_size INTEGER,
    headers JSONB""",
    # DATETIME(6): microseconds, so rows written in one millisecond keep their order
    MYSQL: """    id VARCHAR(26) PRIMARY KEY,
    type VARCHAR(20) NOT NULL,
    message_group VARCHAR(255),
    payload LONGTEXT NOT NULL,
    status SMALLINT NOT NULL DEFAULT 0,
    retry_count SMALLINT NOT NULL DEFAULT 0,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    error_message TEXT,
    client_id VARCHAR(26),
    payload_size INT,
    headers JSON""",
}


def check_table(table):
    """`table` when it is a usable table name (`outbox_messages`, `app.outbox_messages`),
    else ValueError."""
    if not isinstance(table, str) or not _TABLE_NAME.match(table):
        raise ValueError(
            "table %r is not a table name: letters, digits and _, optionally schema.table"
            % (table,)
        )
    return table


def create_table_sql(dialect, table=DEFAULT_TABLE):
    """The statements that create the outbox table and its indexes on `dialect`."""
    if dialect not in DIALECTS:
        raise ValueError("unknown database %r: one of %s" % (dialect, ", ".join(DIALECTS)))
    check_table(table)
    schema, dot, name = table.rpartition(".")
    if dialect == SQLITE:  # SQLite qualifies the index, not the table it is on
        index, on = schema + dot + "idx_" + name, name
    else:  # elsewhere an index lives in its table's schema
        index, on = "idx_" + name, table
    # the SDKs' own name for the default table's client index, so a table one of them made
    # does not get a second, redundant one
    client_index = index + "_client_pending"
    if name == DEFAULT_TABLE:
        client_index = index.replace("idx_" + name, "idx_outbox") + "_client_pending"
    partial = dialect != MYSQL  # MySQL / MariaDB have no partial indexes
    where_pending = " WHERE status = 0" if partial else ""
    where_stuck = " WHERE status = 9" if partial else ""
    exists = "" if dialect == MYSQL else " IF NOT EXISTS"
    return [
        "CREATE TABLE IF NOT EXISTS %s (\n%s\n)" % (table, _COLUMNS[dialect]),
        "CREATE INDEX%s %s_pending ON %s (status, message_group, created_at)%s"
        % (exists, index, on, where_pending),
        "CREATE INDEX%s %s_stuck ON %s (status, created_at)%s" % (exists, index, on, where_stuck),
        "CREATE INDEX%s %s ON %s (client_id, status, created_at)"
        % (exists, client_index, on),
    ]


def create_table_script(dialect, table=DEFAULT_TABLE):
    """`create_table_sql` as one script (what `fc-server outbox schema` prints)."""
    return ";\n\n".join(create_table_sql(dialect, table)) + ";\n"
