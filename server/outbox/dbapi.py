"""The application's database as the outbox sees it: a plain DB-API connection of sqlite3,
psycopg 3 or PyMySQL, which database it is, how its SQL spells parameters and timestamps.

    conn = connect("sqlite:///var/app/app.db")   # sqlite://PATH, postgresql://..., mysql://...
    dialect_of(conn)                             # "sqlite" | "postgres" | "mysql"
    sql = adapt("SELECT id FROM t WHERE status = ?", dialect_of(conn))

A connection is recognised without importing psycopg or PyMySQL (an application on sqlite3
needs neither installed); `connect` imports the driver its URL names. Connections from
`connect` have autocommit off, as each driver's default; a MySQL one also runs its session in
UTC, so NOW(6) there agrees with the UTC times the outbox writes.
"""

import sqlite3
import sys
from datetime import datetime, timezone
from urllib.parse import parse_qsl, unquote, urlsplit

from flowcatalyst.server.platform import clock

from .schema import DIALECTS, MYSQL, POSTGRES, SQLITE

SCHEMES = {
    "sqlite": SQLITE,
    "postgresql": POSTGRES,
    "postgres": POSTGRES,
    "mysql": MYSQL,
    "mariadb": MYSQL,
}
PLACEHOLDERS = {SQLITE: "?", POSTGRES: "%s", MYSQL: "%s"}
MYSQL_OPTIONS = ("charset", "unix_socket", "connect_timeout")


def dialect_of(conn):
    """The database of a DB-API connection; TypeError for a driver the outbox does not know."""
    if isinstance(conn, sqlite3.Connection):
        return SQLITE
    psycopg = sys.modules.get("psycopg")  # loaded if the application made such a connection
    if psycopg is not None and isinstance(conn, psycopg.Connection):
        return POSTGRES
    pymysql = sys.modules.get("pymysql")
    if pymysql is not None and isinstance(conn, pymysql.connections.Connection):
        return MYSQL
    raise TypeError(
        "the outbox needs a DB-API connection of sqlite3 (sqlite3.Connection), psycopg 3 "
        "(psycopg.Connection) or PyMySQL (pymysql.connections.Connection), got %s.%s"
        % (type(conn).__module__, type(conn).__qualname__)
    )


def dialect_of_url(url):
    """The database a URL names (sqlite://, postgresql:// or postgres://, mysql:// or
    mariadb://); ValueError for anything else."""
    scheme = url.partition("://")[0].lower() if isinstance(url, str) and "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(
            "database URL %r: use sqlite://PATH, postgresql://... or mysql://..." % (url,)
        )
    return SCHEMES[scheme]


def connect(url):
    """A new DB-API connection to `url`, autocommit off."""
    dialect = dialect_of_url(url)
    if dialect == SQLITE:
        path = url.partition("://")[2]  # sqlite:///abs/path or sqlite://relative/path
        if not path:
            raise ValueError("database URL %r has no file path (sqlite:///path/app.db)" % url)
        return sqlite3.connect(path, timeout=30)
    if dialect == POSTGRES:
        import psycopg

        return psycopg.connect(url)
    import pymysql

    return pymysql.connect(**mysql_parameters(url))


def mysql_parameters(url):
    """pymysql.connect keywords of a mysql://user:password@host:port/database?charset=...
    URL (query options: charset, unix_socket, connect_timeout)."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    unknown = sorted(set(options) - set(MYSQL_OPTIONS))
    if unknown:
        raise ValueError(
            "database URL: unknown option %s (known: %s)"
            % (", ".join(unknown), ", ".join(MYSQL_OPTIONS))
        )
    out = {
        "host": parts.hostname or "localhost",
        "port": parts.port or 3306,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else "",
        "database": unquote(parts.path.lstrip("/")) or None,
        "charset": options.get("charset", "utf8mb4"),
        "autocommit": False,
        "init_command": "SET time_zone = '+00:00'",
    }
    if "unix_socket" in options:
        out["unix_socket"] = options["unix_socket"]
    if "connect_timeout" in options:
        out["connect_timeout"] = int(options["connect_timeout"])
    return out


def placeholder(dialect):
    return PLACEHOLDERS[dialect]


def marks(dialect, count):
    """`?, ?, ?` (or `%s, %s, %s`): `count` parameter placeholders."""
    return ", ".join([PLACEHOLDERS[dialect]] * count)


def adapt(sql, dialect):
    """SQL written with `?` placeholders in the dialect's parameter style. The SQL must not
    hold a literal `?` (for the %s drivers a literal `%` is escaped here)."""
    if PLACEHOLDERS[dialect] == "?":
        return sql
    return sql.replace("%", "%%").replace("?", "%s")


def timestamp(dialect, when):
    """A created_at / updated_at parameter for `when` (an aware datetime, or seconds since
    the epoch): the fixed-width UTC text on SQLite (string order is time order), an aware
    datetime on PostgreSQL (TIMESTAMPTZ), a naive UTC datetime on MySQL (DATETIME(6) has no
    zone)."""
    if dialect not in DIALECTS:
        raise ValueError("unknown database %r" % (dialect,))
    if isinstance(when, datetime):
        utc = when.astimezone(timezone.utc)
    else:
        utc = datetime.fromtimestamp(when, timezone.utc)
    if dialect == SQLITE:
        return utc.strftime(clock.FORMAT)
    if dialect == MYSQL:
        return utc.replace(tzinfo=None)
    return utc


def epoch(value):
    """Seconds since the epoch of a timestamp read back from any of the three databases:
    text (ours, or another SDK's ISO 8601; without a zone it is UTC), an aware datetime, or
    a naive one (MySQL: UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("z", "Z"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def connection_errors():
    """The exception classes of the loaded drivers that mean the connection is lost or
    unusable (reconnect and try again); an empty tuple catches nothing."""
    out = []
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        out.append(psycopg.OperationalError)
    pymysql = sys.modules.get("pymysql")
    if pymysql is not None:
        out.extend((pymysql.err.OperationalError, pymysql.err.InterfaceError))
    return tuple(out)
