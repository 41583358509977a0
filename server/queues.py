"""Which adapter serves a queue URI (router spec §7, issue: "Queue URIs select the adapter").

  https://sqs.<region>.amazonaws.com/<account>/<name>   SQS
  any URL on the AWS_ENDPOINT_URL_SQS (or AWS_ENDPOINT_URL) endpoint   SQS (a local server)
  nats://host:port?stream=..&consumer=..&subject=..     NATS JetStream
  sqlite:///path/to.db?queue=name, or a bare name         SQLite (a bare name needs FC_DB_PATH)
"""

import os
from urllib.parse import urlsplit

from flowcatalyst.core.config import ConfigError

from .sqsio import is_sqs_url

SQS = "sqs"
NATS = "nats"
SQLITE = "sqlite"


def _origin(url):
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def queue_kind(uri, environ=None):
    environ = os.environ if environ is None else environ
    if not uri or "://" not in uri or uri.startswith("sqlite://"):
        return SQLITE
    if uri.startswith("nats://") or uri.startswith("tls://"):
        return NATS
    if uri.startswith("https://") or uri.startswith("http://"):
        if is_sqs_url(uri):
            return SQS
        for name in ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL"):
            endpoint = environ.get(name)
            if endpoint and _origin(endpoint) == _origin(uri):
                return SQS
        raise ConfigError(
            "queueUri",
            "%r is not an SQS queue URL (sqs.<region>.amazonaws.com, or the AWS_ENDPOINT_URL_SQS endpoint for a local server)" % uri,
        )
    raise ConfigError("queueUri", "unsupported queue URI %r (SQS URL, nats://, sqlite:// or a bare name)" % uri)
