"""The ports: the small duck-typed interfaces through which the engine meets the outside world.
Editions plug adapters into them (SQLite and SQS queues, an httpx transport, ...).

QueueConsumer — a source of message pointers
    identifier                       str, stable name of the queue (used in metrics and logs)
    wakes_on_publish                 bool attribute: poll() waits for new messages itself and
                                     returns as soon as one arrives, so the router never
                                     sleeps between polls (local queues); False for brokers
                                     where polls cost money (SQS), see router spec §3.1
    async poll(max_messages)         -> [QueuedMessage]; raises ConsumerStopped once stopped.
                                     Malformed bodies are the consumer's to set aside (dead
                                     letter, delete, terminate) with the reason: never raise
                                     them into the router
    async ack(handle)                the message is done: delete it
    async nack(handle, delay, reason)  visible again after `delay` s (None → 0); counts as a
                                     failed attempt; `reason` is kept for a dead letter
    async defer(handle, delay)       like nack, but not an attempt (backpressure, ordering)
    async extend_visibility(handle, seconds)
    is_healthy()                     bool
    async stop()                     stop; wake a waiting poll; later polls raise
    async metrics()                  dict with at least `pending` and `in_flight`, or None
    ack/nack/defer/extend raise ReceiptHandleError for a handle the queue no longer knows.

QueuePublisher — where new message pointers go
    async publish(message, dedup_id=None) -> PublishResult

Transport — one HTTP exchange (see httpclient.HttpClient, the default)
    async send(method, url, headers, body, timeout) -> response with .status, .headers
        (lower-case names), .body (bytes); raises httpclient.TransportError
"""


class ConsumerStopped(Exception):
    """poll() on a consumer that has been stopped."""


class ReceiptHandleError(Exception):
    """A receipt handle that is unknown or no longer valid (acked, or its visibility expired
    and the message was received again)."""


class QueuedMessage:
    """A received message: the parsed pointer and what the queue needs to answer for it."""

    __slots__ = ("message", "receipt_handle", "broker_message_id", "queue_identifier", "receive_count")

    def __init__(self, message, receipt_handle, broker_message_id, queue_identifier, receive_count=1):
        self.message = message
        self.receipt_handle = receipt_handle
        self.broker_message_id = broker_message_id
        self.queue_identifier = queue_identifier
        self.receive_count = receive_count

    def __repr__(self):
        return "<QueuedMessage %s from %s #%d>" % (self.message.id, self.queue_identifier, self.receive_count)


class PublishResult:
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"

    __slots__ = ("message_id", "status")

    def __init__(self, message_id, status):
        self.message_id = message_id
        self.status = status

    @property
    def accepted(self):
        return self.status == PublishResult.ACCEPTED

    def __repr__(self):
        return "<PublishResult %s %s>" % (self.message_id, self.status)
