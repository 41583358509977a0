"""The machine's PostgreSQL for tests (shared/services.md): `FC_TEST_DATABASE_URL`, default
postgresql://postgres@127.0.0.1:5432/postgres (trust auth). Each test gets a database of its
own, created empty and dropped afterwards, so no test sees another's rows or an earlier run's.
Where PostgreSQL is not reachable, tests skip with the reason, except under
FC_TEST_REQUIRE_SERVICES=1 (CI), where they fail."""

import os
import uuid

from tests.support.services import service_missing

ADMIN_URL = os.environ.get("FC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _connect():
    import psycopg

    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)


def require_postgres():
    try:
        import psycopg  # noqa: F401
    except ImportError:
        reason = "psycopg is not installed (pip install -e '.[server]')"
    else:
        try:
            _connect().close()
            return ADMIN_URL
        except Exception as e:
            reason = "PostgreSQL is not reachable at %s (set FC_TEST_DATABASE_URL): %s" % (
                ADMIN_URL,
                str(e).strip(),
            )
    service_missing(reason)


def database_url(name):
    base, _, _ = ADMIN_URL.rpartition("/")
    return "%s/%s" % (base, name)


class FreshDatabase:
    """An empty database for one test: `url`; `drop()` removes it (and its connections)."""

    def __init__(self):
        require_postgres()
        self.name = "fc_test_%s" % uuid.uuid4().hex[:12]
        with _connect() as conn:
            conn.execute('CREATE DATABASE "%s"' % self.name)
        self.url = database_url(self.name)

    def drop(self):
        with _connect() as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.name)
