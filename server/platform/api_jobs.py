"""Dispatch jobs (spec/platform.md §3.3): create in a batch (the outbox's and SDKs' path), list
(read model), get, attempts, and the operator's requeue and cancel.

Created jobs are PENDING: the scheduler queues them (one per group at a time, connection
pauses honoured); nothing here publishes. Requeue puts FAILED / CANCELLED / EXPIRED jobs back
to PENDING with their attempts reset (the way out for a BLOCK_ON_ERROR group held behind a
failure); cancel ends PENDING, QUEUED and FAILED jobs (a queued pointer then finds a finished
job and is acknowledged). Both take one id or a filter and answer how many jobs moved.
"""

from flowcatalyst.core import jsoncodec

from . import jobs, jobstate
from .domain import http_url
from .errors import PlatformError, not_found, validation
from .routes import Reply, list_filters, list_page, platform_route, query_list, read_body
from .store import marks
from .validate import Fields, batch_results, camel

MAX_BATCH = 1000
CREATE = (
    "platform:messaging:batch:dispatch-jobs-write",
    "platform:admin:batch:dispatch-jobs-write",
)
VIEW = "platform:messaging:dispatch-job:view"
OPERATE = "platform:messaging:dispatch-job:update"

JOB_ITEM = {
    "type": "object",
    "required": ["code", "targetUrl"],
    "properties": {
        "id": {"type": "string", "description": "caller-chosen id (idempotent create)"},
        "code": {"type": "string"}, "targetUrl": {"type": "string"},
        "payload": {"description": "a string, or JSON (stored as its text)"},
        "payloadContentType": {"type": "string"}, "dataOnly": {"type": "boolean"},
        "source": {"type": "string"}, "kind": {"type": "string", "enum": ["EVENT", "TASK"]},
        "subject": {"type": "string"}, "eventId": {"type": "string"},
        "correlationId": {"type": "string"}, "clientId": {"type": "string"},
        "subscriptionId": {"type": "string"}, "connectionId": {"type": "string"},
        "serviceAccountId": {"type": "string"}, "dispatchPoolId": {"type": "string"},
        "messageGroup": {"type": "string"},
        "mode": {"type": "string", "enum": list(jobstate.MODES)},
        "sequence": {"type": "integer"}, "timeoutSeconds": {"type": "integer"},
        "maxRetries": {"type": "integer"}, "idempotencyKey": {"type": "string"},
        "externalId": {"type": "string"}, "metadata": {"type": "array"},
    },
}  # fmt: skip

SCHEMAS = {
    "DispatchJobCreate": JOB_ITEM,
    "DispatchJobBatch": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "maxItems": MAX_BATCH, "items": JOB_ITEM}},
    },
    "DispatchJob": {"type": "object", "description": "a dispatch job (camelCase columns)"},
    "DispatchAttempt": {"type": "object", "description": "one delivery attempt"},
    "JobSelection": {
        "type": "object",
        "description": "`ids`, or a filter: `statuses`, `subscriptionId`, `messageGroup`",
        "properties": {
            "ids": {"type": "array", "items": {"type": "string"}},
            "statuses": {"type": "array", "items": {"type": "string"}},
            "subscriptionId": {"type": "string"},
            "messageGroup": {"type": "string"},
        },
    },
    "JobsMoved": {"type": "object", "properties": {"count": {"type": "integer"}}},
}


JSON_COLUMNS = ("metadata",)
HIDDEN = ("payload", "projected_at", "group_key", "schema_id")


def job_json(row, raw=False):
    out = {}
    for column, value in row.items():
        if column in HIDDEN and not (raw and column == "payload"):
            continue
        if column in JSON_COLUMNS and value is not None:
            value = jsoncodec.loads(value)
        if column in ("data_only", "is_completed", "is_terminal"):
            value = bool(value)
        out[camel(column)] = value
    return out


def attempt_json(row):
    return {camel(k): v for k, v in row.items()}


def parse_job(principal, data, where=""):
    item = Fields(data, where)
    target = http_url(item, "targetUrl", "target_url", required=True)
    present, payload = item.raw("payload")
    if present and payload is not None and not isinstance(payload, str):
        payload = jsoncodec.dumps(payload)
    mode = item.choice(
        "mode", choices=jobstate.MODES, parse=jobstate.parse_mode, default=jobstate.IMMEDIATE
    )
    metadata = item.key_values("metadata")
    fields = {
        "external_id": item.string("externalId", max_length=100),
        "source": item.string("source", max_length=500),
        "kind": item.choice("kind", choices=("EVENT", "TASK"), default="EVENT"),
        "subject": item.string("subject", max_length=500),
        "event_id": item.string("eventId", max_length=13),
        "correlation_id": item.string("correlationId", max_length=100),
        "metadata": jsoncodec.dumps(metadata or []),
        "payload": payload,
        "payload_content_type": item.string(
            "payloadContentType", default="application/json", max_length=100
        ),
        "data_only": item.boolean("dataOnly", default=True),
        "service_account_id": item.string("serviceAccountId", max_length=17),
        "client_id": principal.default_client(item.string("clientId", max_length=17)),
        "subscription_id": item.string("subscriptionId", max_length=17),
        "connection_id": item.string("connectionId", max_length=17),
        "mode": mode,
        "dispatch_pool_id": item.string("dispatchPoolId", max_length=17),
        "message_group": item.string("messageGroup", max_length=200),
        "sequence": item.integer("sequence", default=99),
        "timeout_seconds": item.integer("timeoutSeconds", default=30, minimum=1, maximum=900),
        "max_retries": item.integer("maxRetries", default=3, minimum=1, maximum=100),
        "idempotency_key": item.string("idempotencyKey", max_length=100),
    }
    job_id = item.string("id", max_length=13)
    if job_id:
        fields["id"] = job_id
    return jobs.new_job(item.string("code", required=True, max_length=200), target, **fields)


async def _existing_ids(tx, missing):
    """The ids already stored under the idempotency keys or ids of jobs not inserted."""
    out = {}
    for job in missing:
        row = await tx.fetchone(
            "SELECT id FROM msg_dispatch_jobs WHERE id = ? OR idempotency_key = ?",
            (job["id"], job["idempotency_key"]),
        )
        out[job["id"]] = row["id"] if row else None
    return out


async def _create(tx, new_jobs):
    inserted = set(await jobs.insert_jobs(tx, new_jobs))
    return inserted, await _existing_ids(tx, [j for j in new_jobs if j["id"] not in inserted])


def selection_clause(principal, data):
    """(SQL condition, params) of a requeue / cancel body: `ids`, or a filter."""
    body = Fields(data)
    where, params = [], []
    ids = body.array("ids", max_items=MAX_BATCH)
    if ids:
        where.append("id IN (%s)" % marks(len(ids)))
        params.extend(ids)
    statuses = body.array("statuses") or []
    for i, status in enumerate(statuses):
        if status not in jobstate.STATUSES:
            body.fail(
                "statuses[%d]" % i, "%r is not one of %s" % (status, ", ".join(jobstate.STATUSES))
            )
    if statuses:
        where.append("status IN (%s)" % marks(len(statuses)))
        params.extend(statuses)
    for name, column in (("subscriptionId", "subscription_id"), ("messageGroup", "message_group")):
        value = body.string(name)
        if value:
            where.append("%s = ?" % column)
            params.append(value)
    if not where:
        raise validation("give `ids` or a filter (statuses, subscriptionId, messageGroup)")
    scope, scope_params = principal.client_clause()
    return " AND ".join(where) + scope, params + scope_params


async def _move_selected(tx, event, condition, params, sets):
    ids = [
        r["id"]
        for r in await tx.fetchall(
            "SELECT id FROM msg_dispatch_jobs WHERE %s AND status IN (%s)"
            % (condition, marks(len(jobstate.sources(event)))),
            list(params) + list(jobstate.sources(event)),
        )
    ]
    return await jobs.move(tx, ids, event, sets) if ids else 0


OPERATIONS = {
    # operator replay: a clean slate, delivered as soon as its group allows
    "REQUEUE": {
        "attempt_count": 0,
        "scheduled_for": None,
        "completed_at": None,
        "last_error": None,
        "queued_at": None,
    },
    "CANCEL": {},
}


def register(api, platform):
    store = platform.store

    async def create(principal, items):
        results = batch_results(items, lambda item, where: parse_job(principal, item, where))
        new_jobs = [r for r in results if isinstance(r, dict)]
        inserted, existing = await store.write(_create, new_jobs) if new_jobs else (set(), {})
        if new_jobs:
            platform.signals.wake("scheduler")
            platform.signals.wake("jobs-projection")
        out = []
        for result in results:
            if not isinstance(result, dict):
                out.append(result.item_result())
            elif result["id"] in inserted:
                out.append({"id": result["id"], "status": "SUCCESS"})
            elif existing.get(result["id"]):
                out.append({"id": existing[result["id"]], "status": "SUCCESS", "duplicate": True})
            else:
                out.append({"id": "", "status": "INTERNAL_ERROR", "error": "not stored"})
        return out

    for path in ("/api/dispatch-jobs/batch", "/api/dispatch/jobs/batch"):

        @platform_route(
            api,
            "POST",
            path,
            summary="Create dispatch jobs in a batch",
            tag="Dispatch jobs",
            permission=CREATE,
            body="DispatchJobBatch",
            responses={200: "BatchResults", 400: "Error"},
            description="One result per item, in order (SUCCESS with the job id, or BAD_REQUEST "
            "/ FORBIDDEN with the reason). `jobs` is accepted for `items`. Jobs start PENDING.",
        )
        async def create_batch(req, principal):
            items = Fields(read_body(req)).array(
                "items", "jobs", required=True, max_items=MAX_BATCH
            )
            return {"results": await create(principal, items)}

    @platform_route(
        api,
        "POST",
        "/api/dispatch-jobs",
        summary="Create one dispatch job",
        tag="Dispatch jobs",
        permission=CREATE,
        body="DispatchJobCreate",
        responses={201: "DispatchJob", 400: "Error", 403: "Error"},
    )
    async def create_one(req, principal):
        job = parse_job(principal, read_body(req))
        inserted, existing = await store.write(_create, [job])
        platform.signals.wake("scheduler")
        job_id = job["id"] if job["id"] in inserted else existing[job["id"]]
        row = await store.fetchone("SELECT * FROM msg_dispatch_jobs WHERE id = ?", (job_id,))
        return Reply(201 if job["id"] in inserted else 200, job_json(row))

    @platform_route(
        api,
        "GET",
        "/api/dispatch-jobs",
        summary="List dispatch jobs (read model), newest first",
        tag="Dispatch jobs",
        permission=VIEW,
        responses={200: "DispatchJob", 400: "Error"},
        query=(
            ("size", "integer", "page size, 1..1000 (default 50)"),
            ("cursor", "string", "from X-Next-Cursor of the previous page"),
            ("statuses", "string", "CSV of statuses"),
            ("codes", "string", "CSV of event type codes"),
            ("applications", "string", "CSV"),
            ("subdomains", "string", "CSV"),
            ("aggregates", "string", "CSV"),
            ("clientIds", "string", "CSV"),
            ("subscriptionId", "string", "exact"),
            ("eventId", "string", "exact"),
            ("messageGroup", "string", "exact"),
        ),
    )
    async def list_jobs(req, principal):
        for status in query_list(req, "statuses", "status"):
            if status not in jobstate.STATUSES:
                raise validation(
                    "query parameter statuses: %r is not one of %s"
                    % (status, ", ".join(jobstate.STATUSES)),
                    field="statuses",
                )
        where, params, scope, scope_params = list_filters(
            req,
            principal,
            (
                ("statuses", "status"),
                ("codes", "code"),
                ("applications", "application"),
                ("subdomains", "subdomain"),
                ("aggregates", "aggregate"),
                ("subscriptionId", "subscription_id"),
                ("eventId", "event_id"),
                ("messageGroup", "message_group"),
            ),
        )
        return await list_page(
            req,
            store,
            "msg_dispatch_jobs_read",
            "created_at",
            where,
            params,
            scope,
            scope_params,
            job_json,
        )

    async def load(principal, job_id):
        row = await store.fetchone("SELECT * FROM msg_dispatch_jobs WHERE id = ?", (job_id,))
        if row is None:
            raise not_found("dispatch job", job_id)
        principal.require_client(row["client_id"])
        return row

    @platform_route(
        api, "GET", "/api/dispatch-jobs/{id}", summary="One dispatch job", tag="Dispatch jobs",
        permission=VIEW, responses={200: "DispatchJob", 403: "Error", 404: "Error"},
    )  # fmt: skip
    async def get_job(req, principal, id):
        return job_json(await load(principal, id))

    @platform_route(
        api, "GET", "/api/dispatch-jobs/{id}/raw", summary="One dispatch job with its payload",
        tag="Dispatch jobs", permission="platform:messaging:dispatch-job:view-raw",
        responses={200: "DispatchJob", 403: "Error", 404: "Error"},
    )  # fmt: skip
    async def get_raw(req, principal, id):
        return job_json(await load(principal, id), raw=True)

    @platform_route(
        api, "GET", "/api/dispatch-jobs/{id}/attempts", summary="A job's delivery attempts, in order",
        tag="Dispatch jobs", permission=VIEW, responses={200: "DispatchAttempt", 403: "Error", 404: "Error"},
    )  # fmt: skip
    async def attempts(req, principal, id):
        await load(principal, id)
        rows = await store.fetchall(
            "SELECT * FROM msg_dispatch_job_attempts WHERE dispatch_job_id = ? ORDER BY attempt_number, created_at",
            (id,),
        )
        return [attempt_json(r) for r in rows]

    def operation(event, verb):
        sets = OPERATIONS[event]

        async def moved(count):
            if count:
                platform.signals.wake("scheduler")
                platform.signals.wake("jobs-projection")
            return {"count": count}

        @platform_route(
            api, "POST", "/api/dispatch-jobs/{id}/" + verb, summary="%s one dispatch job" % verb.title(),
            tag="Dispatch jobs", permission=OPERATE, responses={200: "JobsMoved", 404: "Error", 409: "Error"},
            description="409 when the job's status does not allow it (%s only)." % ", ".join(jobstate.sources(event)),
        )  # fmt: skip
        async def one(req, principal, id):
            row = await load(principal, id)
            if row["status"] not in jobstate.sources(event):
                raise jobstate_conflict(row["status"], verb)
            return await moved(await store.write(jobs.move, [id], event, sets))

        @platform_route(
            api, "POST", "/api/dispatch-jobs/" + verb, summary="%s dispatch jobs by ids or filter" % verb.title(),
            tag="Dispatch jobs", permission=OPERATE, body="JobSelection",
            responses={200: "JobsMoved", 400: "Error"},
        )  # fmt: skip
        async def many(req, principal):
            condition, params = selection_clause(principal, read_body(req))
            return await moved(await store.write(_move_selected, event, condition, params, sets))

    operation("REQUEUE", "requeue")
    operation("CANCEL", "cancel")


def jobstate_conflict(status, verb):
    done = {"requeue": "requeued", "cancel": "cancelled"}[verb]
    return PlatformError(
        409, "INVALID_JOB_STATUS", "a %s dispatch job cannot be %s" % (status, done)
    )
