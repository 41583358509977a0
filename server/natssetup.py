"""Setting up a NATS JetStream queue (router spec §7.6): the connection, and get-or-create of
the stream and the durable pull consumer, checked against the queue's settings. Used by
natsqueue.py; the checks themselves are natsconfig.py's (pure).

A stream or consumer that exists with other settings is used as it is: each difference is
returned as a warning (logged by the caller), and the consumer's own ack_wait, max_deliver
and max_ack_pending are what is in force. One that cannot work raises NatsSetupError.
"""

import asyncio

from nats.aio.client import Client
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from .natsconfig import consumer_problems, describe, stream_problems

_STREAM_KEYS = ("subjects", "retention", "storage", "num_replicas", "max_age", "duplicate_window")
_CONSUMER_KEYS = ("deliver_subject", "ack_policy", "filter_subject", "filter_subjects", "ack_wait", "max_deliver", "max_ack_pending")


class NatsSetupError(Exception):
    """The stream or consumer exists in a form this queue cannot use, or is missing with
    create=false."""


async def connect(settings, callbacks, last_error=lambda: None):
    """A connected nats-py client: reconnecting every reconnect-wait up to max-reconnects
    times (-1: forever) once connected; the first connect gives up after connect-timeout.
    `callbacks`: error_cb, disconnected_cb, reconnected_cb, closed_cb."""
    s = settings
    nc = Client()
    try:
        await asyncio.wait_for(
            nc.connect(
                servers=s.servers,
                name=s.name,
                connect_timeout=s.connect_timeout,
                reconnect_time_wait=s.reconnect_wait,
                max_reconnect_attempts=s.max_reconnects,
                allow_reconnect=True,
                **callbacks,
            ),
            s.connect_timeout,
        )
    except Exception as e:
        try:
            await nc.close()
        except Exception:
            pass
        servers = ", ".join(safe_url(u) for u in s.servers)
        raise ConnectionError("cannot connect to NATS at %s within %ss: %r" % (servers, s.connect_timeout, last_error() or e)) from e
    return nc


async def ensure_stream(js, s):
    """Get or create the stream; returns (created, warnings)."""
    try:
        info = await js.stream_info(s.stream)
    except NotFoundError:
        if not s.create:
            raise NatsSetupError("stream %s does not exist (create=false)" % s.stream) from None
        c = s.stream_config()
        config = api.StreamConfig(
            name=c["name"],
            subjects=c["subjects"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType(c["storage"]),
            num_replicas=c["num_replicas"],
            max_age=c["max_age"],
            duplicate_window=c["duplicate_window"],
        )
        try:
            await js.add_stream(config)
            return True, []
        except BadRequestError:  # created meanwhile (another router): check it as found
            info = await js.stream_info(s.stream)
    errors, diffs = stream_problems(s, fields(info.config, _STREAM_KEYS))
    if errors:
        raise NatsSetupError("; ".join(errors))
    return False, _warnings("stream %s" % s.stream, diffs)


async def ensure_consumer(js, s):
    """Get or create the durable pull consumer; returns (created, warnings, effective), where
    effective holds the consumer's ack_wait, max_deliver and max_ack_pending."""
    created = False
    try:
        info = await js.consumer_info(s.stream, s.consumer)
    except NotFoundError:
        if not s.create:
            raise NatsSetupError("consumer %s on stream %s does not exist (create=false)" % (s.consumer, s.stream)) from None
        c = s.consumer_config()
        config = api.ConsumerConfig(
            durable_name=c["durable_name"],
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            filter_subject=c["filter_subject"],
            ack_wait=c["ack_wait"],
            max_deliver=c["max_deliver"],
            max_ack_pending=c["max_ack_pending"],
        )
        try:
            info = await js.add_consumer(s.stream, config)
            created = True
        except BadRequestError as e:
            try:  # created meanwhile, maybe with other settings: check it as found
                info = await js.consumer_info(s.stream, s.consumer)
            except NotFoundError:
                raise NatsSetupError("consumer %s on stream %s cannot be created: %s" % (s.consumer, s.stream, e)) from e
    have = fields(info.config, _CONSUMER_KEYS)
    errors, diffs = consumer_problems(s, have)
    if errors:
        raise NatsSetupError("; ".join(errors))
    effective = {"ack_wait": s.ack_wait, "max_deliver": s.max_deliver, "max_ack_pending": s.max_ack_pending}
    for key in effective:
        if have.get(key) is not None:
            effective[key] = have[key]
    return created, _warnings("consumer %s on stream %s" % (s.consumer, s.stream), diffs), effective


def _warnings(what, diffs):
    return ["%s exists with different settings: %s; using it as it is" % (what, describe(diffs))] if diffs else []


def fields(config, keys):
    """Some fields of a nats-py config dataclass, enums as their string values."""
    out = {}
    for key in keys:
        value = getattr(config, key, None)
        out[key] = value.value if hasattr(value, "value") else value
    return out


def safe_url(url):
    """A server URL without its credentials, for logs."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2] if sep else url
