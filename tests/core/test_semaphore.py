import asyncio

import pytest

from flowcatalyst.core import FifoSemaphore


def run(coro):
    return asyncio.run(coro)


def test_grants_in_request_order():
    async def go():
        sem = FifoSemaphore(1)
        await sem.acquire()
        order = []

        async def worker(i):
            await sem.acquire()
            order.append(i)
            await asyncio.sleep(0)
            sem.release()

        tasks = [asyncio.create_task(worker(i)) for i in range(20)]
        await asyncio.sleep(0)
        sem.release()
        await asyncio.gather(*tasks)
        return order

    assert run(go()) == list(range(20))


def test_a_newcomer_does_not_jump_the_queue():
    async def go():
        sem = FifoSemaphore(1)
        await sem.acquire()
        waiter = asyncio.create_task(sem.acquire())
        await asyncio.sleep(0)
        sem.release()  # handed to the waiter directly
        assert not sem.try_acquire()
        await waiter
        assert sem.active == 1

    run(go())


def test_raising_the_limit_wakes_waiters_at_once():
    async def go():
        sem = FifoSemaphore(1)
        await sem.acquire()
        waiters = [asyncio.create_task(sem.acquire()) for _ in range(3)]
        await asyncio.sleep(0)
        assert sem.waiting == 3
        sem.set_limit(4)
        await asyncio.gather(*waiters)
        assert sem.active == 4 and sem.available == 0

    run(go())


def test_lowering_the_limit_lets_holders_finish_and_grants_nothing_until_below():
    async def go():
        sem = FifoSemaphore(4)
        for _ in range(4):
            await sem.acquire()
        sem.set_limit(2)
        assert sem.active == 4 and sem.available == 0
        waiter = asyncio.create_task(sem.acquire())
        sem.release()
        sem.release()
        await asyncio.sleep(0)
        assert not waiter.done()  # 2 held = the new limit
        sem.release()
        await waiter
        assert sem.active == 2

    run(go())


def test_cancelled_waiter_is_skipped_and_a_granted_one_passes_its_permit_on():
    async def go():
        sem = FifoSemaphore(1)
        await sem.acquire()
        a = asyncio.create_task(sem.acquire())
        b = asyncio.create_task(sem.acquire())
        await asyncio.sleep(0)
        a.cancel()
        await asyncio.sleep(0)
        sem.release()
        await b
        assert sem.active == 1
        # granted and cancelled before it ran: the permit goes to the next waiter
        c = asyncio.create_task(sem.acquire())
        d = asyncio.create_task(sem.acquire())
        await asyncio.sleep(0)
        sem.release()  # granted to c
        c.cancel()
        await asyncio.sleep(0)
        await d
        assert sem.active == 1

    run(go())


def test_misuse_is_reported():
    sem = FifoSemaphore(1)
    with pytest.raises(RuntimeError):
        sem.release()
    with pytest.raises(ValueError):
        sem.set_limit(0)
    with pytest.raises(ValueError):
        FifoSemaphore(0)
