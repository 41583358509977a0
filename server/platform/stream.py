"""The stream processor (spec/platform.md §6): fan-out of new events to subscriptions, and the
two read projections, each a Loop (loops.py).

Fan-out, theory of operation. One transaction per batch: claim unfanned events (SKIP LOCKED on
PostgreSQL, so several processes share the work), stamp them `fanned_out_at`, and insert one
PENDING job per (event, matching subscription) with `idempotency_key = event:subscription`
(unique; ON CONFLICT DO NOTHING), so a re-run can never make a second webhook. Commit, then
wake the scheduler.

The subscriptions are cached, keyed by the `fc_versions.subscriptions` counter that every
subscription write increments in its own transaction. The counter is read after the claim,
in the claiming transaction: a subscription committed before an event was published is
therefore always seen by that event's fan-out — no TTL window in which new events miss a new
subscription or are stamped with no subscription at all (the defect of spec §6.1).

A subscription's `delaySeconds` becomes the job's `scheduled_for` (event time + delay).
Jobs keep the event's `created_at`, so the scheduler delivers them in event order.
"""

from . import clock, jobs
from .loops import Loop, Loops
from .matching import client_matches, type_matches
from .projections import project_events, project_jobs
from .store import marks

SUBSCRIPTION_VERSION = "SELECT value FROM fc_versions WHERE name = 'subscriptions'"


class Subscription:
    __slots__ = (
        "id", "client_id", "target", "mode", "data_only", "dispatch_pool_id", "service_account_id",
        "max_retries", "timeout_seconds", "sequence", "connection_id", "delay_seconds", "patterns",
    )  # fmt: skip

    def __init__(self, row):
        for name in self.__slots__[:-1]:
            setattr(self, name, row[name])
        self.data_only = bool(row["data_only"])
        self.patterns = []

    def matches(self, event):
        return client_matches(self.client_id, event["client_id"]) and any(
            type_matches(p, event["type"]) for p in self.patterns
        )

    def job_for(self, event):
        return jobs.new_job(
            event["type"],
            self.target,
            source=event["source"],
            subject=event["subject"],
            event_id=event["id"],
            correlation_id=event["correlation_id"],
            payload=event["data"] if event["data"] is not None else "null",
            data_only=self.data_only,
            service_account_id=self.service_account_id,
            client_id=event["client_id"],
            subscription_id=self.id,
            connection_id=self.connection_id,
            mode=self.mode,
            dispatch_pool_id=self.dispatch_pool_id,
            message_group=event["message_group"],
            sequence=self.sequence,
            timeout_seconds=self.timeout_seconds,
            max_retries=self.max_retries,
            scheduled_for=(
                clock.after(self.delay_seconds, event["created_at"]) if self.delay_seconds else None
            ),
            idempotency_key="%s:%s" % (event["id"], self.id),
            created_at=event["created_at"],
        )


async def load_subscriptions(tx):
    rows = await tx.fetchall(
        "SELECT %s FROM msg_subscriptions WHERE status = 'ACTIVE' ORDER BY id"
        % ",".join(Subscription.__slots__[:-1])
    )
    subscriptions = {row["id"]: Subscription(row) for row in rows}
    if subscriptions:
        for binding in await tx.fetchall(
            "SELECT subscription_id, event_type_code FROM msg_subscription_event_types "
            "WHERE subscription_id IN (%s)" % marks(len(subscriptions)),
            list(subscriptions),
        ):
            subscriptions[binding["subscription_id"]].patterns.append(binding["event_type_code"])
    return [s for s in subscriptions.values() if s.patterns]


class FanOut:
    def __init__(self, store, batch_size):
        self.store = store
        self.batch_size = batch_size
        self.version = None
        self.subscriptions = []
        self.jobs_created = 0

    async def step(self):
        """Fan one batch out: (events done, batch size)."""
        events, created = await self.store.write(self._fan_out)
        self.jobs_created += created
        return events, self.batch_size

    async def _fan_out(self, tx):
        events = await tx.fetchall(
            "SELECT id, type, source, subject, data, correlation_id, message_group, client_id, created_at "
            "FROM msg_events WHERE fanned_out_at IS NULL ORDER BY created_at, id LIMIT ?%s"
            % tx.skip_locked,
            (self.batch_size,),
        )
        if not events:
            return 0, 0
        version = (await tx.fetchone(SUBSCRIPTION_VERSION))["value"]
        if version != self.version:
            self.subscriptions = await load_subscriptions(tx)
            self.version = version
        new_jobs = [s.job_for(e) for e in events for s in self.subscriptions if s.matches(e)]
        created = len(await jobs.insert_jobs(tx, new_jobs)) if new_jobs else 0
        ids = [e["id"] for e in events]
        await tx.execute(
            "UPDATE msg_events SET fanned_out_at = ? WHERE id IN (%s)" % marks(len(ids)),
            [clock.now()] + ids,
        )
        return len(events), created


class StreamProcessor(Loops):
    """The enabled loops of fan-out and the two projections."""

    def __init__(self, platform):
        self.platform = platform
        s = platform.settings
        signals = platform.signals
        self.fan_out = FanOut(platform.store, s.fan_out_batch_size)
        self.loops = []

        async def fan_out():
            done, batch = await self.fan_out.step()
            if done:
                signals.wake("scheduler")
                signals.wake("jobs-projection")
            return done, batch

        def projection(project, batch_size):
            async def step():
                return await project(platform.store, batch_size), batch_size

            return step

        for enabled, name, step in (
            (s.fan_out_enabled, "fan-out", fan_out),
            (
                s.events_projection_enabled,
                "events-projection",
                projection(project_events, s.events_projection_batch_size),
            ),
            (
                s.jobs_projection_enabled,
                "jobs-projection",
                projection(project_jobs, s.jobs_projection_batch_size),
            ),
        ):
            if enabled:
                self.loops.append(Loop(name, step, signals, metrics=platform.metrics))
