"""The one place where user-facing errors become HTTP statuses."""

from __future__ import annotations

import json
import logging

from app.errors import ConvoyError, InvalidInput

log = logging.getLogger(__name__)

STATUS_BY_KIND = {
    "invalid": 400,
    "not_found": 404,
    "conflict": 409,
    "configuration": 500,
    "unavailable": 503,
    "error": 500,
}


def status_for(error: Exception) -> int:
    return STATUS_BY_KIND.get(getattr(error, "kind", "error"), 500)


def describe(error: Exception) -> tuple[int, str, str]:
    """(status, kind, message) of any exception; unexpected ones are logged in full."""
    if isinstance(error, ConvoyError):
        return status_for(error), error.kind, error.message
    log.exception("unexpected error", exc_info=error)
    return 500, "error", f"internal error: {type(error).__name__}: {error}; see the convoy daemon log"


async def read_json(request) -> dict:
    """The request body as a dict; Docker sends an empty body to some endpoints."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError as err:
        raise InvalidInput(f"request body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    return data
