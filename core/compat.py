"""What differs between CPython and MicroPython, in one place.

Everything else in the core imports its clock, randomness and environment from here, so the rest
of the engine is written once for both interpreters.
"""

import sys
import time

MICROPYTHON = sys.implementation.name == "micropython"

if MICROPYTHON:
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
    _last_ticks = _ticks_ms()
    _elapsed_ms = 0

    def monotonic():
        """Seconds since start, never wrapping (ticks_ms wraps; we accumulate differences)."""
        global _last_ticks, _elapsed_ms
        now = _ticks_ms()
        _elapsed_ms += _ticks_diff(now, _last_ticks)
        _last_ticks = now
        return _elapsed_ms / 1000

    def wall_time():
        # MicroPython's epoch is 1970 on the unix port but 2000 on some boards.
        return time.time() + _EPOCH_OFFSET

    _EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0

else:
    monotonic = time.monotonic
    wall_time = time.time


def random_bytes(n):
    import os

    return os.urandom(n)


def uuid4():
    """A random (version 4) UUID as its canonical 36-character string."""
    b = bytearray(random_bytes(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = bytes(b).hex()
    return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]


def getenv(name, default=None):
    import os

    value = os.getenv(name)
    return default if value is None or value == "" else value


def create_task(coro):
    import asyncio

    return asyncio.create_task(coro)


def running_loop():
    """The event loop running now (MicroPython has only one)."""
    import asyncio

    return asyncio.get_event_loop() if MICROPYTHON else asyncio.get_running_loop()


async def sleep(seconds):
    """asyncio.sleep that also works as a coroutine on MicroPython (where it is a generator)."""
    import asyncio

    await asyncio.sleep(seconds)


if MICROPYTHON:

    async def with_timeout(coro, seconds):
        """Await `coro`, raising asyncio.TimeoutError after `seconds` (None: no limit)."""
        import asyncio

        if seconds is None:
            return await coro
        return await asyncio.wait_for(coro, seconds)

else:
    import asyncio as _asyncio

    async def with_timeout(coro, seconds):
        """Await `coro`, raising asyncio.TimeoutError after `seconds` (None: no limit).
        asyncio.timeout() avoids the task that wait_for() wraps around every call."""
        async with _asyncio.timeout(seconds):
            return await coro
