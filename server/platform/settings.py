"""The platform server's settings (`fc-server all|platform|stream|scheduler`, and `dev`), in
the table form of edge/settings.py: flag, environment variable, default, help. The router's
own entries (HTTP client, timeouts, event loop) come from server/settings.py.

Paths that are not given follow FC_DATA_DIR: the store `sqlite://<dir>/platform.db`, the
dispatch queue `sqlite://<dir>/queue.db?queue=dispatch`, and (dev only) the app key file.
"""

import os

from flowcatalyst.edge.settings import SETTINGS as EDGE
from flowcatalyst.edge.settings import (
    Settings,
    SettingsError,
    _positive_seconds,
    _text,
    _upper,
    entry,
    is_loopback,
)

from ..settings import ROUTER, _bool, with_aliases


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _schedule(text):
    values = tuple(float(v) for v in text.split(",") if v.strip())
    if not values or any(v < 0 for v in values):
        raise ValueError("must be comma-separated seconds, e.g. 5,15,30,60,120")
    return values


def _service_tokens(text):
    """`name=token,name=token` -> {token: name}."""
    tokens = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        name, sep, token = pair.partition("=")
        if not sep or not name.strip() or len(token.strip()) < 16:
            raise ValueError(
                "must be name=token pairs, comma-separated, each token at least 16 characters"
            )
        tokens[token.strip()] = name.strip()
    return tokens


def _router_entry(name):
    for row in ROUTER:
        if row[0] == name:
            return row
    raise KeyError(name)


PLATFORM = (
    entry(EDGE, "host"),
    entry(EDGE, "port"),
    entry(EDGE, "tls_cert"),
    entry(EDGE, "tls_key"),
    (
        "data_dir",
        "--data-dir",
        "FC_DATA_DIR",
        ".flowcatalyst",
        _text,
        "directory for the embedded SQLite store and queue when their URLs are not given",
    ),
    (
        "database_url",
        "--database-url",
        "FC_DATABASE_URL",
        None,
        _text,
        "the platform store: sqlite://PATH or postgresql://USER@HOST:PORT/DB (default: sqlite://FC_DATA_DIR/platform.db; also DATABASE_URL)",
    ),
    (
        "database_pool_size",
        None,
        "FC_DATABASE_POOL_SIZE",
        "10",
        _positive_int,
        "PostgreSQL connections in the pool",
    ),
    entry(EDGE, "sqlite_sync"),
    (
        "platform_enabled",
        None,
        "FC_PLATFORM_ENABLED",
        "true",
        _bool,
        "serve the platform API (/api/*)",
    ),
    (
        "router_enabled",
        None,
        "FC_ROUTER_ENABLED",
        "true",
        _bool,
        "run the router in this process, configured from the store (also MESSAGE_ROUTER_ENABLED)",
    ),
    (
        "stream_enabled",
        None,
        "FC_STREAM_ENABLED",
        "true",
        _bool,
        "run the stream processor: fan-out and read projections (also FC_STREAM_PROCESSOR_ENABLED)",
    ),
    (
        "scheduler_enabled",
        None,
        "FC_SCHEDULER_ENABLED",
        "true",
        _bool,
        "run the dispatch scheduler (also DISPATCH_SCHEDULER_ENABLED)",
    ),
    (
        "outbox_enabled",
        None,
        "FC_OUTBOX_ENABLED",
        "false",
        _bool,
        "also run an outbox processor here, configured by its FC_OUTBOX_* settings (fc-server outbox --help); its platform defaults to this server (also OUTBOX_PROCESSOR_ENABLED)",
    ),
    (
        "auth",
        None,
        "FC_AUTH",
        "jwt",
        _upper(("JWT", "NONE")),
        "jwt: bearer JWTs or service tokens on /api/* and /monitoring/*; none: no authentication (loopback only)",
    ),
    ("jwt_secret", None, "FC_JWT_SECRET", None, _text, "HS256 secret that signs accepted JWTs"),
    (
        "jwt_public_key",
        None,
        "FC_JWT_PUBLIC_KEY",
        None,
        _text,
        "RS256 public key (PEM text or a file) that signs accepted JWTs",
    ),
    (
        "jwt_jwks_url",
        None,
        "FC_JWT_JWKS_URL",
        None,
        _text,
        "JWKS URL with the keys that sign accepted JWTs (RS256/ES256, chosen by kid)",
    ),
    ("jwt_issuer", None, "FC_JWT_ISSUER", None, _text, "required iss claim of accepted JWTs"),
    ("jwt_audience", None, "FC_JWT_AUDIENCE", None, _text, "required aud claim of accepted JWTs"),
    (
        "jwt_leeway",
        None,
        "FC_JWT_LEEWAY",
        "30",
        _positive_seconds,
        "seconds of clock skew allowed on exp/nbf/iat",
    ),
    (
        "service_tokens",
        None,
        "FC_SERVICE_TOKENS",
        None,
        _service_tokens,
        "static bearer tokens for services (anchor scope): name=token,name=token",
    ),
    (
        "app_key",
        None,
        "FLOWCATALYST_APP_KEY",
        None,
        _text,
        "secret the dispatch callback's tokens derive from; required by the scheduler and the callback (dev makes one)",
    ),
    (
        "dispatch_queue",
        None,
        "FC_DISPATCH_QUEUE",
        None,
        _text,
        "queue the scheduler publishes to and the router consumes: sqlite://PATH?queue=NAME, an SQS queue URL or nats://... (default: sqlite://FC_DATA_DIR/queue.db?queue=dispatch)",
    ),
    (
        "dispatch_visibility",
        None,
        "FC_DISPATCH_QUEUE_VISIBILITY",
        "120",
        _positive_int,
        "visibility timeout (seconds) of the dispatch queue in the router config",
    ),
    (
        "dispatch_endpoint",
        None,
        "FC_DISPATCH_PROCESSING_ENDPOINT",
        None,
        _text,
        "URL the router calls back for each job (default: http://127.0.0.1:FC_API_PORT/api/dispatch/process)",
    ),
    (
        "default_pool_code",
        None,
        "FC_DEFAULT_POOL_CODE",
        "DEFAULT-POOL",
        _text,
        "pool of jobs without a dispatch pool, always in the router config",
    ),
    (
        "default_pool_concurrency",
        None,
        "FC_DEFAULT_POOL_CONCURRENCY",
        "20",
        _positive_int,
        "concurrency of the default pool",
    ),
    (
        "scheduler_batch_size",
        None,
        "FC_SCHEDULER_BATCH_SIZE",
        "200",
        _positive_int,
        "jobs the scheduler claims per poll",
    ),
    (
        "scheduler_poll_interval",
        None,
        "FC_SCHEDULER_POLL_INTERVAL",
        "1",
        _positive_seconds,
        "seconds between scheduler polls when there is nothing to do",
    ),
    (
        "stale_queued_seconds",
        None,
        "FC_SCHEDULER_STALE_SECONDS",
        "300",
        _positive_seconds,
        "a QUEUED job without a callback for this long goes back to PENDING",
    ),
    (
        "stuck_processing_margin",
        None,
        "FC_SCHEDULER_STUCK_MARGIN_SECONDS",
        "60",
        _positive_seconds,
        "a PROCESSING job older than its timeout plus this goes back to PENDING",
    ),
    (
        "retry_schedule",
        None,
        "FC_RETRY_SCHEDULE",
        "5,15,30,60,120",
        _schedule,
        "seconds before retry 1, 2, 3, ... of a failed delivery (the last repeats)",
    ),
    (
        "fan_out_enabled",
        None,
        "FC_STREAM_FAN_OUT_ENABLED",
        "true",
        _bool,
        "fan new events out to subscriptions (the kill switch for new jobs)",
    ),
    (
        "fan_out_batch_size",
        None,
        "FC_STREAM_FAN_OUT_BATCH_SIZE",
        "200",
        _positive_int,
        "events per fan-out transaction",
    ),
    (
        "events_projection_enabled",
        None,
        "FC_STREAM_EVENTS_ENABLED",
        "true",
        _bool,
        "project events into the read model behind GET /api/events",
    ),
    (
        "events_projection_batch_size",
        None,
        "FC_STREAM_EVENTS_BATCH_SIZE",
        "500",
        _positive_int,
        "events per projection pass",
    ),
    (
        "jobs_projection_enabled",
        None,
        "FC_STREAM_DISPATCH_JOBS_ENABLED",
        "true",
        _bool,
        "project dispatch jobs into the read model behind GET /api/dispatch-jobs",
    ),
    (
        "jobs_projection_batch_size",
        None,
        "FC_STREAM_DISPATCH_JOBS_BATCH_SIZE",
        "500",
        _positive_int,
        "jobs per projection pass",
    ),
) + tuple(
    _router_entry(name)
    for name in (
        "request_timeout",
        "connect_timeout",
        "http_client",
        "httpx_pools",
        "http2",
        "event_loop",
        "shutdown_timeout",
        "log_format",
        "log_level",
    )
)

ALIASES = {
    "FC_DATABASE_URL": ("DATABASE_URL",),
    "FC_ROUTER_ENABLED": ("MESSAGE_ROUTER_ENABLED",),
    "FC_STREAM_ENABLED": ("FC_STREAM_PROCESSOR_ENABLED", "STREAM_PROCESSOR_ENABLED"),
    "FC_OUTBOX_ENABLED": ("OUTBOX_PROCESSOR_ENABLED",),
    "FC_SCHEDULER_ENABLED": ("DISPATCH_SCHEDULER_ENABLED",),
    "FC_PLATFORM_ENABLED": ("PLATFORM_ENABLED",),
}


COMMANDS = {
    "dev": (
        "FlowCatalyst developer monolith: the platform API, stream processor, scheduler, router and\n"
        "dashboard in one process on 127.0.0.1:8080, on embedded SQLite in FC_DATA_DIR, with no\n"
        "authentication (loopback only) and an app key made on first start. Nothing to configure."
    ),
    "all": (
        "FlowCatalyst platform: the API (events, subscriptions, dispatch jobs), the stream processor,\n"
        "the dispatch scheduler and the router in one process; each part can be switched off."
    ),
    "platform": "FlowCatalyst platform API only (/api/*); stream processor, scheduler and router run elsewhere.",
    "stream": "FlowCatalyst stream processor only: fans events out to subscriptions and keeps the read models.",
    "scheduler": "FlowCatalyst dispatch scheduler only: moves due PENDING jobs to the dispatch queue.",
}


class PlatformSettings(Settings):
    TABLE = PLATFORM
    USAGE = "all [--host HOST] [--port PORT] [--database-url URL] [--data-dir DIR] [--tls-cert PEM --tls-key PEM]"
    DESCRIPTION = COMMANDS["all"]

    @classmethod
    def help_text(cls, program, command="all"):
        return Settings.help_text.__func__(
            cls, program, usage=cls.USAGE.replace("all", command, 1), description=COMMANDS[command]
        )

    @classmethod
    def parse(cls, argv, environ=None, overrides=None):
        """Settings from argv and the environment; `overrides` (attribute: value) are what a
        subcommand fixes, e.g. platform-only."""
        merged, _ = with_aliases(os.environ if environ is None else environ, ALIASES)
        settings = super().parse(argv, merged)
        for name, value in (overrides or {}).items():
            setattr(settings, name, value)
        return settings

    def validate(self):
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("--tls-cert and --tls-key go together")
        if self.auth == "NONE" and not is_loopback(self.host) and not self.insecure:
            raise SettingsError(
                "FC_AUTH=none only listens on loopback (127.0.0.1): set FC_AUTH=jwt with FC_JWT_SECRET, FC_JWT_PUBLIC_KEY, FC_JWT_JWKS_URL or FC_SERVICE_TOKENS"
            )
        if (
            self.auth == "JWT"
            and self.platform_enabled
            and not (
                self.jwt_secret or self.jwt_public_key or self.jwt_jwks_url or self.service_tokens
            )
        ):
            raise SettingsError(
                "FC_AUTH=jwt needs something to check tokens with: FC_JWT_SECRET, FC_JWT_PUBLIC_KEY, FC_JWT_JWKS_URL or FC_SERVICE_TOKENS (or FC_AUTH=none on loopback)"
            )
        if sum(1 for v in (self.jwt_secret, self.jwt_public_key, self.jwt_jwks_url) if v) > 1:
            raise SettingsError("give one of FC_JWT_SECRET, FC_JWT_PUBLIC_KEY and FC_JWT_JWKS_URL")
        if (self.scheduler_enabled or self.platform_enabled) and not self.app_key:
            raise SettingsError(
                "FLOWCATALYST_APP_KEY is required: the scheduler signs and the dispatch callback checks each job's token with it"
            )
        if not (
            self.platform_enabled
            or self.router_enabled
            or self.stream_enabled
            or self.scheduler_enabled
        ):
            raise SettingsError(
                "nothing to run: FC_PLATFORM_ENABLED, FC_ROUTER_ENABLED, FC_STREAM_ENABLED and FC_SCHEDULER_ENABLED are all false"
            )
        if self.database_url is None:
            self.database_url = "sqlite://" + os.path.join(self.data_dir, "platform.db")
        if self.dispatch_queue is None:
            self.dispatch_queue = "sqlite://%s?queue=dispatch" % os.path.join(
                self.data_dir, "queue.db"
            )
        return self

    def callback_url(self, port):
        return self.dispatch_endpoint or "http://127.0.0.1:%d/api/dispatch/process" % port


__all__ = ["PlatformSettings", "SettingsError"]
