"""Errors of the platform API (spec/platform.md §3.1): `{"error": "<CODE>", "message": ...}`
with 400 VALIDATION_ERROR, 401 UNAUTHORIZED, 403 FORBIDDEN, 404 NOT_FOUND, 409 for a
duplicate or a business rule (its own code, e.g. SUBSCRIPTION_CODE_EXISTS), 429, else 500."""

from flowcatalyst.edge.api_common import ApiError


class PlatformError(ApiError):
    """An API error with the platform's codes (above); the edge's ApiError answers it."""


def validation(message, **extra):
    return PlatformError(400, "VALIDATION_ERROR", message, **extra)


def not_found(what, ident):
    return PlatformError(404, "NOT_FOUND", "%s %s not found" % (what, ident))


def forbidden(message):
    return PlatformError(403, "FORBIDDEN", message)


def conflict(code, message):
    return PlatformError(409, code, message)


def unauthorized(message):
    return PlatformError(401, "UNAUTHORIZED", message)
