"""A real platform server for tests (server/platform/app.py), started in a background thread
on port 0 like EdgeRunner, with its store at `database_url` (default: SQLite in tmp_path) and
everything else in tmp_path. Defaults: FC_AUTH=none, a fixed app key, every part enabled;
keyword arguments override any setting.

    with PlatformRunner(tmp_path, database_url) as platform:
        platform.client().post("/api/events", json={...})
        platform.query("SELECT status FROM msg_dispatch_jobs")
"""

import httpx

from flowcatalyst.server.platform.app import PlatformServer
from flowcatalyst.server.platform.settings import PlatformSettings
from tests.support.edgeapp import EdgeRunner

APP_KEY = "test-app-key-0123456789"


class PlatformRunner(EdgeRunner):
    def __init__(self, tmp_path, database_url=None, name="platform", **settings):
        values = {
            "auth": "NONE",
            "app_key": APP_KEY,
            "data_dir": str(tmp_path),
            "database_url": database_url,
        }
        values.update(settings)
        EdgeRunner.__init__(
            self,
            tmp_path,
            name=name,
            app_class=PlatformServer,
            settings_class=PlatformSettings,
            **values,
        )
        self.settings.validate()

    def query(self, sql, params=()):
        """Rows (dicts) of a query on the server's own store, run in its event loop."""
        return self.call(self.app.store.fetchall(sql, params))

    def write(self, unit, *args):
        return self.call(self.app.store.write(unit, *args))


def subscribe(platform, endpoint, *patterns, **fields):
    """Create a subscription through the API (code and name made up); its JSON, with the
    signing secret."""
    subscribe.count += 1
    body = {
        "code": "sub-%d" % subscribe.count,
        "name": "subscription %d" % subscribe.count,
        "endpoint": endpoint,
        "eventTypes": [{"eventTypeCode": p} for p in patterns or ("shop:orders:order:*",)],
    }
    body.update(fields)
    response = httpx.post(platform.url("/api/subscriptions"), json=body)
    assert response.status_code == 201, response.text
    return response.json()


subscribe.count = 0


def publish(platform, *events, **common):
    """Publish events through the batch API (`type` defaults to shop:orders:order:created);
    their ids, in order."""
    items = [
        dict({"type": "shop:orders:order:created", "source": "test"}, **common, **e) for e in events
    ]
    response = httpx.post(platform.url("/api/events/batch"), json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(r["status"] == "SUCCESS" for r in results), results
    return [r["id"] for r in results]


def jobs_of(platform, subscription_id):
    """The subscription's jobs, oldest first (the write model: no projection lag)."""
    return platform.query(
        "SELECT * FROM msg_dispatch_jobs WHERE subscription_id = ? ORDER BY created_at, id",
        (subscription_id,),
    )


def attempts_of(platform, job_id):
    return platform.query(
        "SELECT * FROM msg_dispatch_job_attempts WHERE dispatch_job_id = ? ORDER BY attempt_number, created_at",
        (job_id,),
    )
