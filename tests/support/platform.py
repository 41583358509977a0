"""A real platform server for tests (server/platform/app.py), started in a background thread
on port 0 like EdgeRunner, with its store at `database_url` (default: SQLite in tmp_path) and
everything else in tmp_path. Defaults: FC_AUTH=none, a fixed app key, every part enabled;
keyword arguments override any setting.

    with PlatformRunner(tmp_path, database_url) as platform:
        platform.client().post("/api/events", json={...})
        platform.query("SELECT status FROM msg_dispatch_jobs")
"""

from flowcatalyst.server.platform.app import PlatformServer
from flowcatalyst.server.platform.settings import PlatformSettings
from tests.support.edgeapp import EdgeRunner

APP_KEY = "test-app-key-0123456789"


class PlatformRunner(EdgeRunner):
    def __init__(self, tmp_path, database_url=None, name="platform", **settings):
        values = {"auth": "NONE", "app_key": APP_KEY, "data_dir": str(tmp_path), "database_url": database_url}
        values.update(settings)
        EdgeRunner.__init__(self, tmp_path, name=name, app_class=PlatformServer, settings_class=PlatformSettings, **values)
        self.settings.validate()

    def query(self, sql, params=()):
        """Rows (dicts) of a query on the server's own store, run in its event loop."""
        return self.call(self.app.store.fetchall(sql, params))

    def write(self, unit, *args):
        return self.call(self.app.store.write(unit, *args))
