"""The platform server as a whole: it starts on either store, serves health and metrics, and
stops cleanly."""

import httpx

from tests.support.platform import PlatformRunner


def test_starts_serves_health_and_stops(tmp_path, database_url):
    with PlatformRunner(tmp_path, database_url) as platform:
        health = httpx.get(platform.url("/health"))
        assert health.status_code == 200 and health.json()["status"] == "UP"
        assert httpx.get(platform.url("/metrics")).status_code == 200
        assert platform.query("SELECT COUNT(*) AS n FROM fc_schema_migrations")[0]["n"] >= 1


def test_platform_only_has_its_own_health(tmp_path, database_url):
    with PlatformRunner(tmp_path, database_url, router_enabled=False, scheduler_enabled=False) as platform:
        body = httpx.get(platform.url("/health")).json()
        assert body["status"] == "UP" and "loops" in body
        assert httpx.get(platform.url("/health/ready")).json() == {"status": "READY"}
