"""MemoryQueue semantics under MicroPython: visibility, group hold, dead letters."""

import asyncio

from mpcheck import check, equal, finish, pointer

from flowcatalyst.core import MemoryQueue, ReceiptHandleError

now = [0.0]
clock = lambda: now[0]  # noqa: E731


async def main():
    q = MemoryQueue("q", visibility_timeout=30, max_receive_count=2, clock=clock)
    for i in range(3):
        q.put(pointer("http://t/", "g%d" % i, "grp", "BLOCK_ON_ERROR"))
    q.put(pointer("http://t/", "free"))
    batch = await q.poll(10, wait=0)
    equal([m.message.id for m in batch], ["g0", "g1", "g2", "free"], "one poll returns the group in order")
    equal(await q.poll(10, wait=0), [], "nothing while all are in flight")
    await q.ack(batch[0].receipt_handle)
    await q.defer(batch[1].receipt_handle, 0)
    await q.defer(batch[2].receipt_handle, 0)
    await q.ack(batch[3].receipt_handle)
    again = await q.poll(10, wait=0)
    equal([m.message.id for m in again], ["g1", "g2"], "deferred messages return in order")
    now[0] = 31.0  # visibility expires: both come back
    third = await q.poll(10, wait=0)
    equal([m.receive_count for m in third], [2, 2], "receive count grows on redelivery")
    try:
        await q.ack(again[0].receipt_handle)
        check(False, "a handle from before the redelivery is rejected")
    except ReceiptHandleError:
        check(True, "a handle from before the redelivery is rejected")
    await q.nack(third[0].receipt_handle, 5, "HTTP 500")
    await q.ack(third[1].receipt_handle)
    equal([d.message.id for d in q.dead_letters], ["g1"], "dead-lettered after max receives")
    check("HTTP 500" in q.dead_letters[0].reason, "dead letter says why")
    equal(len(q), 0, "queue empty; the group went on")
    equal(q.put(pointer("http://t/", "free")).status, "DUPLICATE", "dedup within the window")
    finish()


asyncio.run(main())
