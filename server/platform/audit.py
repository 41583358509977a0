"""The audit trail of admin changes (spec/platform.md §1.9): a use case that creates, changes
or removes an aggregate writes one `aud_logs` row in the same transaction as the change, so
the trail holds exactly what committed.

    await audit.record(tx, principal, "DispatchPool", pool_id, "CreateDispatchPoolCommand",
                       {"code": "fast", "concurrency": 5}, client_id)
"""

from flowcatalyst.core import jsoncodec

from . import clock, ids

COLUMNS = (
    "id", "entity_type", "entity_id", "operation", "operation_json", "principal_id",
    "application_id", "client_id", "performed_at",
)  # fmt: skip


async def record(tx, principal, entity_type, entity_id, operation, details, client_id=None):
    """Write one audit row for `operation` (a command name) on `entity_type` `entity_id`."""
    row = (
        ids.typed(ids.AUDIT_LOG),
        entity_type,
        entity_id,
        operation,
        jsoncodec.dumps(details),
        principal.id,
        None,
        client_id,
        clock.now(),
    )
    await tx.insert("aud_logs", COLUMNS, [row])
