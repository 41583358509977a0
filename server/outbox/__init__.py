"""The outbox (spec/platform.md §2.6, §5): an application writes outbox rows in its own
database transaction, and the outbox processor forwards them to the platform.

    from flowcatalyst.server.outbox import create_table, write_event
    create_table(conn)                              # once; idempotent
    write_event(conn, "shop:orders:order:shipped", {"orderId": "o-1"}, source="shop")

schema     the table on SQLite, PostgreSQL and MySQL / MariaDB; status codes
writer     write_event, write_dispatch_job, write_audit_log, create_table (the application side)
dbapi      which database a DB-API connection or URL is; connect(url)
schemacli  `fc-server outbox schema`: print the table's DDL

Importing this package loads no database driver.
"""

from .schema import (
    BAD_REQUEST,
    DEFAULT_TABLE,
    FORBIDDEN,
    GATEWAY_ERROR,
    IN_PROGRESS,
    INTERNAL_ERROR,
    PENDING,
    STATUS_NAMES,
    SUCCESS,
    UNAUTHORIZED,
    create_table_sql,
)
from .writer import create_table, write_audit_log, write_dispatch_job, write_event

__all__ = [
    "write_event",
    "write_dispatch_job",
    "write_audit_log",
    "create_table",
    "create_table_sql",
    "DEFAULT_TABLE",
    "PENDING",
    "SUCCESS",
    "BAD_REQUEST",
    "INTERNAL_ERROR",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "GATEWAY_ERROR",
    "IN_PROGRESS",
    "STATUS_NAMES",
]
