"""The dispatch scheduler (spec/platform.md §4): moves due PENDING jobs to QUEUED and publishes a
message pointer for each to the dispatch queue, where the router picks it up and calls
`POST /api/dispatch/process` (api_dispatch.py).

Theory of operation. One poll = one transaction that claims and flips, then the publish:

1. Claim up to `batch` jobs that are PENDING and due (`scheduled_for` passed), whose
   connection is not PAUSED, whose dispatch pool is not SUSPENDED, and that are the head of
   their line. A job's line is its
   `group_key` (subscription + message group, ordered modes only; IMMEDIATE jobs have none
   and are always free). A job is *not* the head while its line has
     - a job in flight (QUEUED or PROCESSING): one job per group at a time;
     - an earlier PENDING job — except a NEXT_ON_ERROR job waiting for its retry, which is
       set aside so the rest of its group goes on (DESIGN.md "Dispatch modes");
     - a FAILED BLOCK_ON_ERROR job: the group is held until an operator requeues or
       cancels it. A FAILED NEXT_ON_ERROR job holds nothing.
   These rules are SQL (NOT EXISTS over the group index), so they hold across polls, across
   scheduler restarts and across processes. A named lock (`try_lock`) keeps one scheduler
   claiming at a time on PostgreSQL; the others' polls pass.
2. Flip them QUEUED (`queued_at` = now) and commit, before publishing: a crash after the
   commit leaves QUEUED rows that stale recovery returns to PENDING.
3. Publish the pointers in one batch. Each carries the pool's router code, the job's HMAC
   token (dispatchauth.py) and a deduplication id `{jobId}:{queued_at}` — unique per
   queuing, so a retry is never dropped as a duplicate of the last attempt (the GO risk of
   spec §4.6). If the queue refuses, the jobs go back to PENDING at once.

Recovery (every `recovery_interval`): QUEUED longer than FC_SCHEDULER_STALE_SECONDS (the
pointer was lost) and PROCESSING longer than the job's timeout plus a margin (the callback
died mid-delivery; no existing platform recovers these, spec §4.5) return to PENDING.
"""

import time

from flowcatalyst.core.log import logger

from . import clock, jobs
from .loops import Loop, Loops
from .routerconfig import router_pool_code

RECOVERY_INTERVAL = 30.0

_log = logger("scheduler")

_IN_FLIGHT = "('QUEUED', 'PROCESSING')"

CLAIM = (
    "SELECT j.id, j.mode, j.message_group, j.group_key, p.code AS pool_code, p.client_id AS pool_client "
    "FROM msg_dispatch_jobs j LEFT JOIN msg_dispatch_pools p ON p.id = j.dispatch_pool_id "
    "WHERE j.status = 'PENDING' AND (j.scheduled_for IS NULL OR j.scheduled_for <= ?) "
    "AND (p.status IS NULL OR p.status <> 'SUSPENDED') "
    "AND (j.connection_id IS NULL OR j.connection_id NOT IN "
    "     (SELECT id FROM msg_connections WHERE status = 'PAUSED')) "
    "AND (j.group_key IS NULL OR NOT EXISTS ("
    "  SELECT 1 FROM msg_dispatch_jobs b WHERE b.group_key = j.group_key AND b.id <> j.id AND ("
    "    b.status IN " + _IN_FLIGHT + " "
    "    OR (b.status = 'FAILED' AND b.mode = 'BLOCK_ON_ERROR') "
    "    OR (b.status = 'PENDING' AND (b.created_at < j.created_at OR (b.created_at = j.created_at AND b.id < j.id)) "
    "        AND NOT (b.mode = 'NEXT_ON_ERROR' AND b.attempt_count > 0))))) "
    "ORDER BY j.created_at, j.id LIMIT ?"
)


class Scheduler(Loops):
    def __init__(self, platform, publisher):
        self.platform = platform
        self.publisher = publisher
        s = platform.settings
        self.batch_size = s.scheduler_batch_size
        self.default_pool = s.default_pool_code
        self.stale_seconds = s.stale_queued_seconds
        self.stuck_margin = s.stuck_processing_margin
        self._next_recovery = 0.0
        self.loops = [
            Loop(
                "scheduler",
                self.step,
                platform.signals,
                idle=s.scheduler_poll_interval,
                metrics=platform.metrics,
            )
        ]

    async def step(self):
        """One poll: (jobs queued, batch size)."""
        if time.monotonic() >= self._next_recovery:
            self._next_recovery = time.monotonic() + RECOVERY_INTERVAL
            await self.recover()
        claimed, queued_at = await self.platform.store.write(self._claim)
        if not claimed:
            return 0, self.batch_size
        await self._publish(claimed, queued_at)
        self.platform.signals.wake("jobs-projection")
        return len(claimed), self.batch_size

    async def _claim(self, tx):
        if not await tx.try_lock("fc-scheduler"):
            return [], None
        now = clock.now()
        rows = await tx.fetchall(CLAIM, (now, self.batch_size))
        if rows:
            await jobs.move(tx, [r["id"] for r in rows], "CLAIM", {"queued_at": now})
        return rows, now

    def pointer(self, job):
        pool = (
            router_pool_code(job["pool_code"], job["pool_client"])
            if job["pool_code"]
            else self.default_pool
        )
        return {
            "id": job["id"],
            "poolCode": pool,
            "authToken": self.platform.dispatch_auth.token(job["id"]),
            "mediationType": "HTTP",
            "mediationTarget": self.platform.callback_url,
            # ordered jobs go one at a time already (the claim); a group id here would only
            # serialise IMMEDIATE jobs in the router, so it is set for ordered jobs alone
            "messageGroupId": job["group_key"],
            "highPriority": False,
            "dispatchMode": job["mode"],
        }

    async def _publish(self, claimed, queued_at):
        items = [(self.pointer(job), "%s:%s" % (job["id"], queued_at)) for job in claimed]
        try:
            await self.publisher.publish_batch(items)
        except Exception as e:
            ids = [job["id"] for job in claimed]
            await self.platform.store.write(jobs.move, ids, "PUBLISH_FAILED")
            _log.error("publish failed; jobs back to PENDING", jobs=len(ids), error=str(e))
            raise

    async def recover(self):
        """Return stale QUEUED and stuck PROCESSING jobs to PENDING; the number returned."""
        stale, stuck = await self.platform.store.write(
            _recover, clock.after(-self.stale_seconds), self.stuck_margin
        )
        if stale or stuck:
            _log.warning("recovered jobs", stale_queued=stale, stuck_processing=stuck)
        return stale + stuck


async def _recover(tx, stale_before, stuck_margin):
    stale = [
        r["id"]
        for r in await tx.fetchall(
            "SELECT id FROM msg_dispatch_jobs WHERE status = 'QUEUED' AND queued_at < ?",
            (stale_before,),
        )
    ]
    now_epoch = clock.to_epoch(clock.now())
    stuck = [
        r["id"]
        for r in await tx.fetchall(
            "SELECT id, last_attempt_at, timeout_seconds FROM msg_dispatch_jobs WHERE status = 'PROCESSING'"
        )
        if r["last_attempt_at"] is None
        or clock.age_seconds(r["last_attempt_at"], now_epoch) > r["timeout_seconds"] + stuck_margin
    ]
    if stale:
        await jobs.move(
            tx, stale, "STALE", {"last_error": "no dispatch callback came after queuing"}
        )
    if stuck:
        await jobs.move(tx, stuck, "STUCK", {"last_error": "the dispatch callback did not finish"})
    return len(stale), len(stuck)
