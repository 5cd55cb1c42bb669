"""The one place where user-facing errors become HTTP statuses, and requests are read.

Both sockets read a request the same way: the body is capped before it is
read whole (Content-Length first, then counted while it streams in, so a
chunked body cannot slip past), then parsed and validated against the
endpoint's schema in one pass (`app.validation.parse_json`, which raises
InvalidInput like any other user error).

Both answer errors the same way too: routes raise, and the handlers from
`exception_handlers` (registered on each Starlette app) turn whatever was
raised into that socket's error response. No route catches errors itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from app.errors import ConvoyError, InvalidInput
from app.validation import parse_json, validate

log = logging.getLogger(__name__)
T = TypeVar("T")

# Every request on either socket is a small JSON document (a name, a few options, a URL).
MAX_REQUEST_BYTES = 1 << 20

STATUS_BY_KIND = {
    "invalid": 400,
    "not_found": 404,
    "conflict": 409,
    "cancelled": 409,  # the operation was stopped on request; nothing changed
    "damaged": 422,  # the request is fine, what it names is unusable as stored
    "configuration": 500,
    "unavailable": 503,
    "error": 500,
}


class RequestTooLarge(InvalidInput):
    """A request body over the cap: an invalid request, answered 413 rather than 400."""

    status = 413


def status_for(error: Exception) -> int:
    return getattr(error, "status", None) or STATUS_BY_KIND.get(getattr(error, "kind", "error"), 500)


def describe(error: Exception, *, log_unexpected: bool = True) -> tuple[int, str, str]:
    """(status, kind, message) of any exception; unexpected ones are logged in full
    (unless the caller leaves that to uvicorn, which logs what escapes an app)."""
    if isinstance(error, ConvoyError):
        return status_for(error), error.kind, error.message
    if log_unexpected:
        log.exception("unexpected error", exc_info=error)
    return 500, "error", f"internal error: {type(error).__name__}: {error}; see the convoy daemon log"


#: How one socket answers an error: (status, kind, message) -> its response.
Responder = Callable[[int, str, str], Response]
ExceptionHandler = Callable[[Request, Exception], Any]


def exception_handlers(respond: Responder) -> dict[Any, ExceptionHandler]:
    """Starlette `exception_handlers` that answer every error with `respond`.

    A ConvoyError (every user error) is answered by Starlette's
    ExceptionMiddleware and logs nothing: it is the user's answer. Anything
    else is a bug: Starlette's ServerErrorMiddleware answers it the same way,
    then raises it on to uvicorn, which logs its traceback once.
    """

    async def user_error(_request: Request, error: Exception) -> Response:
        return respond(*describe(error))

    async def unexpected(_request: Request, error: Exception) -> Response:
        return respond(*describe(error, log_unexpected=False))

    return {ConvoyError: user_error, Exception: unexpected}


def _too_large(what: str, size: str) -> RequestTooLarge:
    return RequestTooLarge(
        f"{what} is larger than {MAX_REQUEST_BYTES >> 20} MiB ({size}); convoy's requests are small JSON "
        "documents: check the client that sent it"
    )


async def read_body(request: Request, what: str) -> bytes:
    """The request body, refused with 413 as soon as it is known to be over the cap."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise _too_large(what, f"{declared} bytes announced")
    chunks, total = [], 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > MAX_REQUEST_BYTES:
                raise _too_large(what, f"more than {MAX_REQUEST_BYTES} bytes sent")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody is left to answer; not a fault of ours worth a traceback
        log.info("%s: the client hung up after %d bytes of its body", what, total)
        raise InvalidInput(f"{what} ended before its body did: the client hung up") from None
    return b"".join(chunks)


async def read_request(request: Request, schema: type[T], what: str) -> T:
    """The body parsed against `schema`.

    An empty body, or `null` (a Go client's nil), is an empty object: Docker
    sends no body to Plugin.Activate.
    """
    body = (await read_body(request, what)).strip()
    return parse_json(schema, body if body not in (b"", b"null") else b"{}", what=what, max_bytes=MAX_REQUEST_BYTES)


def read_query(request: Request, schema: type[T], what: str) -> T:
    """The query string (last value of each key) validated against `schema`."""
    return validate(schema, dict(request.query_params), what=what)
