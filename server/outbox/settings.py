"""Settings of the outbox processor (`fc-server outbox`), every one of spec/platform.md §5.5
under its FC_ name (the RS processor's, with GO's and TS's names as aliases), in the table form
of edge/settings.py."""

import os

from flowcatalyst.edge.settings import SETTINGS as EDGE
from flowcatalyst.edge.settings import Settings, SettingsError, _positive_seconds, _text, entry

from ..platform.settings import _positive_int, _schedule
from ..settings import _bool, with_aliases
from . import dbapi, schema


def _milliseconds(text):
    value = float(text)
    if value <= 0:
        raise ValueError("must be a positive number of milliseconds")
    return value / 1000.0


OUTBOX = (
    ("db_url", "--db-url", "FC_OUTBOX_DB_URL", None, _text,
     "the application database holding the outbox: sqlite://PATH, postgresql://... or mysql://USER:PASSWORD@HOST:PORT/DB (required)"),
    ("events_table", None, "FC_OUTBOX_EVENTS_TABLE", schema.DEFAULT_TABLE, _text, "table of the EVENT rows"),
    ("dispatch_jobs_table", None, "FC_OUTBOX_DISPATCH_JOBS_TABLE", schema.DEFAULT_TABLE, _text,
     "table of the DISPATCH_JOB rows"),
    ("audit_logs_table", None, "FC_OUTBOX_AUDIT_LOGS_TABLE", schema.DEFAULT_TABLE, _text, "table of the AUDIT_LOG rows"),
    ("api_base_url", "--api-base-url", "FC_API_BASE_URL", "http://localhost:8080", _text,
     "the platform (also FC_OUTBOX_PLATFORM_URL, FC_OUTBOX_API_URL, FLOWCATALYST_URL)"),
    ("api_token", None, "FC_API_TOKEN", None, _text,
     "bearer token for the platform: a service token or JWT (also FC_OUTBOX_PLATFORM_AUTH_TOKEN, FC_OUTBOX_TOKEN)"),
    ("poll_interval", None, "FC_OUTBOX_POLL_INTERVAL_MS", "1000", _milliseconds, "milliseconds between polls when there is little to do"),
    ("poll_batch_size", None, "FC_OUTBOX_BATCH_SIZE", "500", _positive_int, "rows claimed per poll"),
    ("api_batch_size", None, "FC_API_BATCH_SIZE", "100", _positive_int,
     "items per request to the platform (also the most rows of one message group claimed at once)"),
    ("max_in_flight", None, "FC_MAX_IN_FLIGHT", "5000", _positive_int, "rows claimed and not yet finished, at most"),
    ("buffer_size", None, "FC_GLOBAL_BUFFER_SIZE", "1000", _positive_int, "rows claimed and waiting to be sent, at most"),
    ("max_concurrent_groups", None, "FC_MAX_CONCURRENT_GROUPS", "10", _positive_int,
     "message groups (or ungrouped batches) sending at once"),
    ("max_retries", None, "FC_OUTBOX_MAX_RETRIES", "3", _positive_int,
     "sends of a row whose failure is retryable (INTERNAL_ERROR, UNAUTHORIZED, GATEWAY_ERROR) before it is kept as failed"),
    ("retry_backoff", None, "FC_OUTBOX_RETRY_BACKOFF", "5,30,120", _schedule,
     "seconds before resend 1, 2, ... of a row that failed retryably (the last repeats); a group waits behind it"),
    ("block_on_error", None, "FC_OUTBOX_BLOCK_ON_ERROR", "true", _bool,
     "a grouped row that failed for good holds its group until an operator requeues it (false: the group goes on)"),
    ("processing_timeout", None, "FC_OUTBOX_PROCESSING_TIMEOUT_SECONDS", "300", _positive_seconds,
     "a row IN_PROGRESS for this long belongs to a processor that died: back to PENDING"),
    ("recovery_interval", None, "FC_OUTBOX_RECOVERY_INTERVAL_MS", "60000", _milliseconds,
     "milliseconds between recovery passes"),
    ("http_timeout", None, "FC_HTTP_TIMEOUT", "30", _positive_seconds, "seconds the platform has to answer one batch"),
    ("connect_timeout", None, "FC_HTTP_CONNECT_TIMEOUT", "10", _positive_seconds, "seconds to connect to the platform"),
    ("host", "--host", "FC_METRICS_HOST", "127.0.0.1", _text, "address of the health and metrics port"),
    ("port", "--port", "FC_METRICS_PORT", "9090", _positive_int, "port of /health, /health/ready, /metrics and /outbox/groups"),
    entry(EDGE, "shutdown_timeout", help="seconds the batches out may take to finish on SIGTERM/SIGINT"),
    entry(EDGE, "log_format"),
    entry(EDGE, "log_level"),
)  # fmt: skip

ALIASES = {
    "FC_OUTBOX_DB_URL": ("OUTBOX_PROCESSOR_DATABASE_URL", "FC_OUTBOX_SOURCE_DB_URL"),
    "FC_API_BASE_URL": ("FC_OUTBOX_PLATFORM_URL", "FC_OUTBOX_API_URL", "FLOWCATALYST_URL"),
    "FC_API_TOKEN": ("FC_OUTBOX_PLATFORM_AUTH_TOKEN", "FC_OUTBOX_TOKEN"),
}


class OutboxSettings(Settings):
    TABLE = OUTBOX
    INSECURE_FLAG = False
    USAGE = "outbox [--db-url URL] [--api-base-url URL] [--host HOST] [--port PORT]"
    DESCRIPTION = (
        "FlowCatalyst outbox processor: forwards the rows an application wrote to its outbox table\n"
        "to the platform's batch endpoints, in order per message group, and deletes them. Several\n"
        "may serve one table. `outbox schema --db sqlite|postgres|mysql` prints the table's SQL."
    )

    def __init__(self, **values):
        Settings.__init__(self, **values)
        self.tls_cert = self.tls_key = None  # listen() serves the metrics port over plain HTTP

    @classmethod
    def parse(cls, argv, environ=None):
        merged, _ = with_aliases(os.environ if environ is None else environ, ALIASES)
        return super().parse(argv, merged)

    def validate(self):
        if not self.db_url:
            raise SettingsError("FC_OUTBOX_DB_URL is required: the database with the outbox table")
        try:
            dbapi.dialect_of_url(self.db_url)
        except ValueError as e:
            raise SettingsError("FC_OUTBOX_DB_URL: %s" % e) from None
        if not self.api_base_url.startswith(("http://", "https://")):
            raise SettingsError(
                "FC_API_BASE_URL must be an http:// or https:// URL, got %r" % self.api_base_url
            )
        if self.buffer_size > self.max_in_flight:
            raise SettingsError(
                "FC_GLOBAL_BUFFER_SIZE (%d) cannot exceed FC_MAX_IN_FLIGHT (%d)"
                % (self.buffer_size, self.max_in_flight)
            )
        return self

    def tables(self):
        """The distinct tables to serve, in the order of the settings."""
        out = []
        for name in (self.events_table, self.dispatch_jobs_table, self.audit_logs_table):
            if name not in out:
                out.append(name)
        return out
