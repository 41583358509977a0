"""The machine's MariaDB / MySQL for tests (shared/services.md): `FC_TEST_MYSQL_URL`, default
mysql://root@127.0.0.1:3306/test. Each test gets a database of its own, created empty and
dropped afterwards. Where the server is not reachable, tests skip with the reason, except
under FC_TEST_REQUIRE_SERVICES=1 (CI), where they fail."""

import os
import uuid

from flowcatalyst.server.outbox import dbapi
from tests.support.services import service_missing

ADMIN_URL = os.environ.get("FC_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def _connect(url=ADMIN_URL):
    if "connect_timeout=" not in url:  # an unreachable server: skip after 3 s, not 10
        url += ("&" if "?" in url else "?") + "connect_timeout=3"
    return dbapi.connect(url)


def require_mariadb():
    try:
        import pymysql  # noqa: F401
    except ImportError:
        reason = "PyMySQL is not installed (pip install -e '.[server]')"
    else:
        try:
            _connect().close()
            return ADMIN_URL
        except Exception as e:
            reason = "MariaDB / MySQL is not reachable at %s (set FC_TEST_MYSQL_URL): %s" % (
                ADMIN_URL,
                str(e).strip(),
            )
    service_missing(reason)


class FreshMariaDb:
    """An empty database for one test: `url`, `connect()` (PyMySQL, autocommit off);
    `drop()` removes it (close the connections first: MariaDB waits for their locks)."""

    def __init__(self):
        require_mariadb()
        self.name = "fc_test_%s" % uuid.uuid4().hex[:12]
        self._admin("CREATE DATABASE `%s` CHARACTER SET utf8mb4" % self.name)
        base, _, _ = ADMIN_URL.partition("?")[0].rpartition("/")
        self.url = "%s/%s" % (base, self.name)

    def connect(self):
        return _connect(self.url)

    def drop(self):
        self._admin("DROP DATABASE IF EXISTS `%s`" % self.name)

    def _admin(self, statement):
        conn = _connect()
        try:
            conn.cursor().execute(statement)
        finally:
            conn.close()
