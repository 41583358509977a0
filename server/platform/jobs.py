"""Writing dispatch jobs: the one way rows enter `msg_dispatch_jobs`, shared by fan-out
(stream.py) and the dispatch-job batch API (api_jobs.py).

`new_job(**fields)` fills the defaults of spec §2.4 and the derived `group_key`;
`insert_jobs(tx, jobs)` writes them with one multi-row INSERT (per parameter-limit chunk),
skipping any whose idempotency key exists already, and returns the ids it inserted.
"""

from . import clock, ids, jobstate
from .store import marks

COLUMNS = (
    "id", "external_id", "source", "kind", "code", "subject", "event_id", "correlation_id", "metadata",
    "target_url", "protocol", "payload", "payload_content_type", "data_only", "service_account_id",
    "client_id", "subscription_id", "connection_id", "mode", "dispatch_pool_id", "message_group",
    "group_key", "sequence", "timeout_seconds", "status", "max_retries", "retry_strategy",
    "scheduled_for", "attempt_count", "idempotency_key", "created_at", "updated_at",
)  # fmt: skip

DEFAULTS = {
    "external_id": None,
    "source": None,
    "kind": "EVENT",
    "subject": None,
    "event_id": None,
    "correlation_id": None,
    "metadata": "[]",
    "protocol": "HTTP_WEBHOOK",
    "payload": None,
    "payload_content_type": "application/json",
    "data_only": True,
    "service_account_id": None,
    "client_id": None,
    "subscription_id": None,
    "connection_id": None,
    "mode": jobstate.IMMEDIATE,
    "dispatch_pool_id": None,
    "message_group": None,
    "sequence": 99,
    "timeout_seconds": 30,
    "status": jobstate.PENDING,
    "max_retries": 3,
    "retry_strategy": "exponential",
    "scheduled_for": None,
    "attempt_count": 0,
    "idempotency_key": None,
}


def new_job(code, target_url, **fields):
    """A job row (dict by column) with a new id; `created_at` defaults to now."""
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise TypeError("not dispatch job columns: %s" % ", ".join(sorted(unknown)))
    job = dict(DEFAULTS)
    job.update(fields)
    job["id"] = fields.get("id") or ids.tsid()
    job["code"] = code
    job["target_url"] = target_url
    job["created_at"] = job.get("created_at") or clock.now()
    job["updated_at"] = job.get("updated_at") or job["created_at"]
    job["group_key"] = jobstate.group_key(job["mode"], job["subscription_id"], job["message_group"])
    return job


async def insert_jobs(tx, jobs):
    """Insert `jobs` (new_job dicts); the ids inserted, in order (a job whose id or
    idempotency key is taken is left out)."""
    if not jobs:
        return []
    rows = [tuple(job[c] for c in COLUMNS) for job in jobs]
    returned = await tx.insert(
        "msg_dispatch_jobs", COLUMNS, rows, "ON CONFLICT DO NOTHING RETURNING id"
    )
    inserted = {row["id"] for row in returned}
    return [job["id"] for job in jobs if job["id"] in inserted]


async def move(tx, ids, event, sets=None):
    """Apply `event` (jobstate.TRANSITIONS) to the jobs `ids` that are in a status it applies
    to, setting the columns in `sets` (a dict) too; the number of jobs moved. One conditional UPDATE:
    of two processes racing for a job, only one moves it."""
    from_statuses = jobstate.sources(event)
    to_status = {jobstate.TRANSITIONS[(s, event)] for s in from_statuses}.pop()
    now = clock.now()
    sets = dict(sets or {}, status=to_status, updated_at=now, projected_at=None)
    assignments = ",".join("%s = ?" % column for column in sets)
    sql = "UPDATE msg_dispatch_jobs SET %s WHERE status IN (%s) AND id IN (%s)" % (
        assignments,
        marks(len(from_statuses)),
        marks(len(ids)),
    )
    return await tx.execute(sql, list(sets.values()) + list(from_statuses) + list(ids))
