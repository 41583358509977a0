"""The developer monolith (`fc-dev`, `python -m flowcatalyst.server`, `make dev`): the `all`
server with defaults that need no configuration.

- FC_AUTH=none (settings refuse it anywhere but loopback) and text logs, unless set;
- the store and the dispatch queue in FC_DATA_DIR (default ./.flowcatalyst), made on first
  start, schema included;
- an app key (FLOWCATALYST_APP_KEY) made once and kept in FC_DATA_DIR/app-key (mode 0600), so
  queued pointers stay valid across restarts;
- a webhook receiver at /dev/webhooks (devreceiver.py) to send the first subscription to;
- a banner that says where everything is, with a copy-paste example.
"""

import os
import secrets
import sys

from .settings import PlatformSettings

DEV_DEFAULTS = {"FC_AUTH": "none", "FC_LOG_FORMAT": "text"}
APP_KEY_FILE = "app-key"


def settings(args, environ=None):
    environ = dict(os.environ if environ is None else environ)
    for name, value in DEV_DEFAULTS.items():
        environ.setdefault(name, value)
    s = PlatformSettings.parse(args, environ)
    os.makedirs(s.data_dir, exist_ok=True)
    if not s.app_key:
        s.app_key = app_key(s.data_dir)
    s.dev_mode = True
    return s.validate()


def app_key(data_dir):
    """The key kept in `data_dir`, made (32 random bytes, base64) the first time."""
    path = os.path.join(data_dir, APP_KEY_FILE)
    try:
        with open(path) as f:
            key = f.read().strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


BANNER = """
FlowCatalyst dev {version}: platform, stream processor, scheduler and router in one process

  dashboard          {base}/dashboard
  API (OpenAPI)      {base}/api/openapi.json
  webhook receiver   {base}/dev/webhooks   (POST a webhook to it; GET lists what arrived)
  store              {store}
  dispatch queue     {queue}
  authentication     none (loopback only; FC_AUTH=jwt for tokens)

Try it: a subscription to the receiver, an event, and the webhook that arrives:

  curl -s {base}/api/subscriptions -H 'Content-Type: application/json' -d '{{"code": "demo-hook", "name": "Demo hook", "endpoint": "{base}/dev/webhooks", "eventTypes": [{{"eventTypeCode": "demo:shop:order:created"}}]}}'
  curl -s {base}/api/events/batch -H 'Content-Type: application/json' -d '{{"items": [{{"type": "demo:shop:order:created", "source": "demo", "data": {{"orderId": "o-1"}}}}]}}'
  curl -s {base}/dev/webhooks
  curl -s '{base}/api/dispatch-jobs?size=5'

Stop with Ctrl-C. Logs follow.
"""


def print_banner(server, out=None):
    s = server.settings
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
    base = "%s://%s:%d" % ("https" if s.tls_cert else "http", host, server.port)
    (out or sys.stdout).write(
        BANNER.format(
            version=server.version, base=base, store=server.store.url, queue=s.dispatch_queue
        )
    )
    (out or sys.stdout).flush()
