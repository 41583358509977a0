import pytest

from tests.support.postgres import FreshDatabase


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """The URL of an empty platform database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield "sqlite://%s" % (tmp_path / "platform.db")
        return
    db = FreshDatabase()
    try:
        yield db.url
    finally:
        db.drop()


@pytest.fixture
def postgres_url():
    """An empty PostgreSQL database (tests that are about PostgreSQL only)."""
    db = FreshDatabase()
    try:
        yield db.url
    finally:
        db.drop()
