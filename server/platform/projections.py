"""The read models behind the list endpoints (spec/platform.md §6.2, §6.3).

Events are immutable: each is copied once into `msg_events_read` (with the application,
subdomain and aggregate of its type) and stamped `projected_at`. A dispatch job is
re-projected whenever it changes: every UPDATE of a job sets `projected_at = NULL` (the
partial index finds those rows cheaply, without GO's `updated_at > projected_at` scan), and
the projection upserts the row and stamps it again. Claiming with SKIP LOCKED lets several
stream processors share the work on PostgreSQL; the claim, the copy and the stamp are one
transaction, so a job that changes meanwhile waits on the row lock and is projected again.
"""

from . import clock, jobstate
from .matching import split_code
from .store import marks

EVENT_COLUMNS = (
    "id", "spec_version", "type", "source", "subject", "time", "data", "correlation_id",
    "causation_id", "deduplication_id", "message_group", "client_id", "created_at",
)  # fmt: skip

JOB_COLUMNS = (
    "id", "external_id", "source", "kind", "code", "subject", "event_id", "correlation_id",
    "target_url", "protocol", "service_account_id", "client_id", "subscription_id", "connection_id",
    "dispatch_pool_id", "mode", "message_group", "sequence", "status", "attempt_count", "max_retries",
    "last_error", "timeout_seconds", "retry_strategy", "scheduled_for", "expires_at", "completed_at",
    "last_attempt_at", "duration_millis", "idempotency_key", "created_at", "updated_at",
)  # fmt: skip

DERIVED = ("application", "subdomain", "aggregate", "projected_at")
JOB_DERIVED = ("is_completed", "is_terminal") + DERIVED


async def project_events(store, batch_size):
    """Copy up to `batch_size` unprojected events into msg_events_read; the number copied."""
    return await store.write(_project_events, batch_size)


async def _project_events(tx, batch_size):
    rows = await tx.fetchall(
        "SELECT %s FROM msg_events WHERE projected_at IS NULL ORDER BY created_at LIMIT ?%s"
        % (",".join(EVENT_COLUMNS), tx.skip_locked),
        (batch_size,),
    )
    if not rows:
        return 0
    now = clock.now()
    values = [tuple(r[c] for c in EVENT_COLUMNS) + split_code(r["type"]) + (now,) for r in rows]
    await tx.insert(
        "msg_events_read", EVENT_COLUMNS + DERIVED, values, "ON CONFLICT (id) DO NOTHING"
    )
    ids = [r["id"] for r in rows]
    await tx.execute(
        "UPDATE msg_events SET projected_at = ? WHERE id IN (%s)" % marks(len(ids)), [now] + ids
    )
    return len(rows)


async def project_jobs(store, batch_size):
    """Upsert up to `batch_size` changed dispatch jobs into msg_dispatch_jobs_read; the number."""
    return await store.write(_project_jobs, batch_size)


async def _project_jobs(tx, batch_size):
    rows = await tx.fetchall(
        "SELECT %s FROM msg_dispatch_jobs WHERE projected_at IS NULL ORDER BY created_at LIMIT ?%s"
        % (",".join(JOB_COLUMNS), tx.skip_locked),
        (batch_size,),
    )
    if not rows:
        return 0
    now = clock.now()
    values = [
        tuple(r[c] for c in JOB_COLUMNS)
        + (r["status"] == jobstate.COMPLETED, r["status"] in jobstate.TERMINAL)
        + split_code(r["code"])
        + (now,)
        for r in rows
    ]
    columns = JOB_COLUMNS + JOB_DERIVED
    updates = ",".join("%s = excluded.%s" % (c, c) for c in columns if c != "id")
    await tx.insert(
        "msg_dispatch_jobs_read", columns, values, "ON CONFLICT (id) DO UPDATE SET " + updates
    )
    ids = [r["id"] for r in rows]
    await tx.execute(
        "UPDATE msg_dispatch_jobs SET projected_at = ? WHERE id IN (%s)" % marks(len(ids)),
        [now] + ids,
    )
    return len(rows)
