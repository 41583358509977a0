import pytest

from flowcatalyst.server.outbox import dbapi
from tests.support.mariadb import FreshMariaDb
from tests.support.postgres import FreshDatabase


class OutboxDb:
    """A fresh application database: `url`, `dialect`, `connect()` (a DB-API connection,
    autocommit off); the connections it made are closed at the end of the test."""

    def __init__(self, url):
        self.url = url
        self.dialect = dbapi.dialect_of_url(url)
        self.connections = []

    def connect(self):
        conn = dbapi.connect(self.url)
        self.connections.append(conn)
        return conn

    def close(self):
        for conn in self.connections:
            try:
                conn.close()
            except Exception:  # closed by the test already
                pass


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def outbox_db(request, tmp_path):
    """An empty application database, once on SQLite, PostgreSQL and MariaDB / MySQL."""
    if request.param == "sqlite":
        server, url = None, "sqlite://%s" % (tmp_path / "app.db")
    elif request.param == "postgres":
        server = FreshDatabase()
        url = server.url
    else:
        server = FreshMariaDb()
        url = server.url
    db = OutboxDb(url)
    try:
        yield db
    finally:
        db.close()
        if server is not None:
            server.drop()
