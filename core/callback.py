"""The handle a pool gets for each message: resolve it exactly once (router spec §3.6).

`ack()`, `nack(delay, reason)` and `defer(delay)` forward to the function that owns the queue
message (the router: it looks up the current receipt handle and calls the consumer). The first
resolution wins; later ones are ignored and logged. A callback that is abandoned unresolved
(its task was cancelled or crashed) is nacked in the background with `ABANDON_DELAY`, so no
message is ever left without an answer until its visibility timeout.
"""

from .compat import create_task
from .log import logger

ACK = "ack"
NACK = "nack"
DEFER = "defer"
ABANDON_DELAY = 10

_log = logger("callback")


class MessageCallback:
    __slots__ = ("message", "batch_id", "resolved", "_resolve")

    def __init__(self, message, batch_id, resolve):
        self.message = message
        self.batch_id = batch_id
        self.resolved = None
        self._resolve = resolve  # async (action, delay, reason)

    def _claim(self, action):
        if self.resolved is not None:
            _log.warn("callback already resolved", messageId=self.message.id, first=self.resolved, ignored=action)
            return False
        self.resolved = action
        return True

    async def ack(self):
        if self._claim(ACK):
            await self._resolve(ACK, None, None)

    async def nack(self, delay=None, reason=None):
        if self._claim(NACK):
            await self._resolve(NACK, delay, reason)

    async def defer(self, delay):
        if self._claim(DEFER):
            await self._resolve(DEFER, delay, None)

    def abandon(self):
        """Resolve with a background nack if nothing resolved this callback yet; returns that
        task (or None) so an owner shutting down can wait for it."""
        if self.resolved is not None:
            return None
        self.resolved = NACK
        return create_task(self._resolve(NACK, ABANDON_DELAY, "delivery abandoned"))
