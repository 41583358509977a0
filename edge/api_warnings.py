"""Warnings: `/monitoring/warnings*` and `/warnings*` (router spec §9.2).

Two shapes, as in RS: the monitoring list `{id, timestamp, severity, category, source, message,
acknowledged, acknowledgedAt}` and the raw one `{id, category, severity, message, source,
created_at, acknowledged, acknowledged_at}`. Categories and severities are spelled one way
everywhere (`QUEUE_HEALTH`, `WARN`; RS printed `QUEUEHEALTH` in one place and `QueueHealth` in
another, spec §14 #14); filters accept any of those spellings.
"""

from flowcatalyst.core.log import logger
from flowcatalyst.core.timefmt import iso_utc_ms

from .api_common import ApiError, bool_arg, int_arg, json_response, path_arg, route

_log = logger("api")


def raw(w):
    return {
        "id": w.id,
        "category": w.category,
        "severity": w.severity,
        "message": w.message,
        "source": w.source,
        "created_at": iso_utc_ms(w.created_at),
        "acknowledged": w.acknowledged,
        "acknowledged_at": iso_utc_ms(w.acknowledged_at) if w.acknowledged_at else None,
    }


def _key(text):
    """`QueueHealth`, `QUEUEHEALTH` and `QUEUE_HEALTH` name the same category."""
    return text.replace("_", "").upper()


def _filtered(service, severity=None, category=None, acknowledged=None):
    out = []
    for w in service.list(acknowledged=acknowledged):
        if severity is not None and _key(w.severity) != _key(severity):
            continue
        if category is not None and _key(w.category) != _key(category):
            continue
        out.append(w)
    return out


def register(app, edge):
    warnings = edge.router.warnings

    def acknowledge(warning_id):
        warning_id = path_arg(warning_id)
        if not warnings.acknowledge(warning_id):
            raise ApiError(404, "Warning not found", "no warning with id %r" % warning_id)
        _log.info("warning acknowledged through the API", warningId=warning_id)

    # -- /monitoring/warnings ------------------------------------------------------------------

    @route(app, "/monitoring/warnings")
    async def monitoring_list(req):
        return json_response([w.to_dict() for w in warnings.list()])

    @route(app, "/monitoring/warnings/unacknowledged")
    async def monitoring_unacknowledged(req):
        return json_response([raw(w) for w in warnings.list(acknowledged=False)])

    @route(app, "/monitoring/warnings/severity/<severity>")
    async def monitoring_by_severity(req, severity):
        return json_response([raw(w) for w in _filtered(warnings, severity=path_arg(severity))])

    @route(app, "/monitoring/warnings/<warning_id>/acknowledge", methods=("POST",))
    async def monitoring_acknowledge(req, warning_id):
        acknowledge(warning_id)
        return json_response({"status": "success"})

    # -- /warnings ------------------------------------------------------------------------------

    @route(app, "/warnings")
    async def list_warnings(req):
        items = _filtered(
            warnings,
            severity=req.args.get("severity") or None,
            category=req.args.get("category") or None,
            acknowledged=bool_arg(req, "acknowledged", None),
        )
        return json_response([raw(w) for w in items])

    @route(app, "/warnings", methods=("DELETE",))
    async def clear(req):
        cleared = warnings.clear()
        _log.info("warnings cleared through the API", count=cleared)
        return json_response({"status": "success", "cleared": cleared})

    @route(app, "/warnings/critical")
    async def critical(req):
        return json_response([raw(w) for w in _filtered(warnings, severity="CRITICAL")])

    @route(app, "/warnings/unacknowledged")
    async def unacknowledged(req):
        return json_response([raw(w) for w in warnings.list(acknowledged=False)])

    @route(app, "/warnings/acknowledge-all", methods=("POST",))
    async def acknowledge_all(req):
        count = warnings.acknowledge_all()
        _log.info("all warnings acknowledged through the API", count=count)
        return json_response({"acknowledged": count})

    @route(app, "/warnings/old", methods=("DELETE",))
    async def remove_old(req):
        hours = int_arg(req, "hours", 24, 0, 24 * 365)
        removed = warnings.remove_older_than(hours * 3600)
        return json_response({"status": "success", "removed": removed})

    @route(app, "/warnings/<warning_id>/acknowledge", methods=("POST",))
    async def acknowledge_one(req, warning_id):
        acknowledge(warning_id)
        return json_response({"acknowledged": True})
