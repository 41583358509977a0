"""The server router's settings: the edge's entries for the API, configuration, auth, TLS and
timeouts (edge/settings.py), plus what a datacenter router adds — the HTTP client (core or
httpx, HTTP/2), the event loop, active/standby through Redis. A flag wins over its variable."""

import os
import socket

from flowcatalyst.edge.settings import SETTINGS as EDGE
from flowcatalyst.edge.settings import (
    Settings,
    SettingsError,
    _positive_seconds,
    _text,
    _upper,
    entry,
)


def _bool(text):
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _pool_patterns(text):
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    if not patterns:
        raise ValueError("must list pool codes or patterns, e.g. WEBHOOKS,PARTNER-*")
    return patterns


def default_instance_id():
    return "%s:%d" % (socket.gethostname(), os.getpid())


COMMON = [entry(EDGE, "config_file", help="router config JSON (processingPools, queues); a router needs it or FLOWCATALYST_CONFIG_URL")] + [
    entry(EDGE, name)
    for name in (
        "host",
        "port",
        "config_urls",
        "config_interval",
        "platform_api_key",
        "auth_mode",
        "basic_username",
        "basic_password",
        "api_token",
        "tls_cert",
        "tls_key",
        "shutdown_timeout",
    )
]

ROUTER = tuple(
    COMMON
    + [
        # spec §4.3, production: a delivery may take 15 minutes (the platform's callback
        # delivers the webhook itself within its own timeout), connecting 30 s
        entry(EDGE, "request_timeout", default="900"),
        entry(EDGE, "connect_timeout", default="30"),
        ("db_path", "--db", "FC_DB_PATH", None, _text, "SQLite database for queues given by a bare name (sqlite://PATH?queue=NAME needs none)"),
        entry(EDGE, "sqlite_sync"),
        ("http_client", None, "FC_HTTP_CLIENT", "core", _upper(("CORE", "HTTPX")), "core (the fast asyncio HTTP/1.1 client) or httpx (HTTP/2, proxies, custom TLS)"),
        ("httpx_pools", None, "FC_HTTPX_POOLS", None, _pool_patterns, "pools that deliver through httpx while the others use FC_HTTP_CLIENT: comma-separated codes or shell patterns (PARTNER-*)"),
        ("http2", None, "FC_HTTP2", "false", _bool, "deliver over HTTP/2 via TLS ALPN (httpx pools only; one client per pool)"),
        ("event_loop", None, "FC_EVENT_LOOP", "asyncio", _upper(("ASYNCIO", "UVLOOP")), "asyncio, or uvloop where it is installed"),
        ("standby_enabled", None, "FC_STANDBY_ENABLED", "false", _bool, "active/standby: only the instance holding the Redis lock polls (also FLOWCATALYST_STANDBY_ENABLED, STANDBY_ENABLED)"),
        ("standby_redis_url", None, "FC_STANDBY_REDIS_URL", "redis://127.0.0.1:6379", _text, "Redis for the standby lock (also FLOWCATALYST_STANDBY_REDIS_URL, FLOWCATALYST_REDIS_URL)"),
        ("standby_lock_key", None, "FC_STANDBY_LOCK_KEY", "fc:router:leader", _text, "the lock's key (also FLOWCATALYST_STANDBY_LOCK_KEY)"),
        ("standby_lock_ttl", None, "FC_STANDBY_LOCK_TTL", "30", _positive_seconds, "seconds the lock lives without a heartbeat (also FLOWCATALYST_STANDBY_LOCK_TTL)"),
        ("standby_heartbeat", None, "FC_STANDBY_HEARTBEAT_INTERVAL", "10", _positive_seconds, "seconds between heartbeats, at most half the TTL (also FLOWCATALYST_STANDBY_HEARTBEAT_INTERVAL)"),
        ("instance_id", None, "FC_INSTANCE_ID", None, _text, "this instance in the lock, unique per instance (default: host:pid; also FLOWCATALYST_INSTANCE_ID)"),
        entry(EDGE, "log_format"),
        entry(EDGE, "log_level"),
    ]
)

# FlowCatalyst's own names (router spec §10.1), read when the FC_ variable is not set. A boolean
# takes 1/true/yes/on (RS read FLOWCATALYST_STANDBY_ENABLED=1 as false, spec §14 #17).
ALIASES = {
    "FC_STANDBY_ENABLED": ("FLOWCATALYST_STANDBY_ENABLED", "STANDBY_ENABLED"),
    "FC_STANDBY_REDIS_URL": ("FLOWCATALYST_STANDBY_REDIS_URL", "FLOWCATALYST_REDIS_URL"),
    "FC_STANDBY_LOCK_KEY": ("FLOWCATALYST_STANDBY_LOCK_KEY",),
    "FC_STANDBY_LOCK_TTL": ("FLOWCATALYST_STANDBY_LOCK_TTL",),
    "FC_STANDBY_HEARTBEAT_INTERVAL": ("FLOWCATALYST_STANDBY_HEARTBEAT_INTERVAL",),
    "FC_INSTANCE_ID": ("FLOWCATALYST_INSTANCE_ID",),
}


def with_aliases(environ, aliases_table=None):
    """`environ` with each unset FC_ variable of ALIASES (or `aliases_table`) taken from its
    first alias that is set; and which alias stood in for which variable (for error
    messages)."""
    merged = dict(environ)
    used = {}
    for name, aliases in (ALIASES if aliases_table is None else aliases_table).items():
        if merged.get(name):
            continue
        for alias in aliases:
            if merged.get(alias):
                merged[name] = merged[alias]
                used[name] = alias
                break
    return merged, used


class RouterServerSettings(Settings):
    TABLE = ROUTER
    USAGE = "router [--config FILE] [--host HOST] [--port PORT] [--db PATH] [--tls-cert PEM --tls-key PEM] [--insecure]"
    DESCRIPTION = (
        "FlowCatalyst router: consumes message pointers from SQS, NATS JetStream or SQLite queues\n"
        "and delivers them with per-group order, concurrency and rate limits, circuit breakers\n"
        "and retries; configured by the platform (FLOWCATALYST_CONFIG_URL) or a file."
    )

    @classmethod
    def parse(cls, argv, environ=None):
        merged, used = with_aliases(os.environ if environ is None else environ)
        try:
            return super().parse(argv, merged)
        except SettingsError as e:
            text = str(e)
            for name, alias in used.items():
                if text.startswith(name + "="):
                    raise SettingsError(alias + text[len(name) :]) from e
            raise

    def validate(self):
        Settings.validate(self)
        if self.http2 and self.http_client != "HTTPX" and not self.httpx_pools:
            raise SettingsError("FC_HTTP2=true needs FC_HTTP_CLIENT=httpx or FC_HTTPX_POOLS (the core client speaks HTTP/1.1)")
        if self.standby_heartbeat * 2 > self.standby_lock_ttl:
            raise SettingsError(
                "FC_STANDBY_HEARTBEAT_INTERVAL must be shorter than FC_STANDBY_LOCK_TTL, at most half of it "
                "(a leader that cannot renew stops polling one heartbeat before its lock can expire)"
            )
        if self.instance_id is None:
            self.instance_id = default_instance_id()
        return self

