"""Routes only raise; each app's exception handlers answer, in that socket's shape.

The control socket answers `{"error": {"kind", "message"}}` with the kind's
status, for unknown paths and methods too (the CLI reads no other shape);
Docker's socket answers `{"Err"}` with 500 (413 for a body over the cap). A
bug is answered the same way, as an internal error, and its traceback is
logged once.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.control import api as control_api
from app.errors import Cancelled, Damaged, NotFound
from app.http_errors import RequestTooLarge, exception_handlers
from app.volumedriver import api as plugin_api
from tests.daemon_harness import UnixHTTPConnection


def asgi_call(app: Starlette, method: str = "POST", path: str = "/x") -> tuple[int, dict]:
    """(status, JSON body) of one request to an ASGI app, without a server or a client library.

    Starlette raises a bug on after it has answered (for the server to log): the answer counts.
    """
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "headers": [], "server": ("t", 80), "client": ("t", 1),
    }
    try:
        asyncio.run(app(scope, receive, send))
    except RuntimeError as e:
        assert "a bug" in str(e)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


def raising(error: Exception) -> Route:
    async def endpoint(_request: Request) -> JSONResponse:
        raise error

    return Route("/x", endpoint, methods=["POST"])


CASES = [
    (Damaged("block b is corrupted"), 422, "damaged"),
    (Cancelled("the restore was cancelled; nothing was committed"), 409, "cancelled"),
    (NotFound("volume v does not exist"), 404, "not_found"),
    (RequestTooLarge("too big"), 413, "invalid"),
]


@pytest.mark.parametrize("error, status, kind", CASES, ids=[c[2] + str(c[1]) for c in CASES])
def test_the_control_shape_for_each_kind(error, status, kind):
    app = Starlette(routes=[raising(error)], exception_handlers=exception_handlers(control_api._error_reply))
    assert asgi_call(app) == (status, {"error": {"kind": kind, "message": str(error)}})


@pytest.mark.parametrize("error, status, kind", CASES, ids=[c[2] + str(c[1]) for c in CASES])
def test_the_docker_shape_for_each_kind(error, status, kind):
    app = Starlette(routes=[raising(error)], exception_handlers=exception_handlers(plugin_api._error_reply))
    assert asgi_call(app) == (413 if status == 413 else 500, {"Err": str(error)})


@pytest.mark.parametrize("reply", [control_api._error_reply, plugin_api._error_reply], ids=["control", "docker"])
def test_a_bug_is_an_internal_error_logged_once(reply, caplog):
    app = Starlette(routes=[raising(RuntimeError("a bug"))], exception_handlers=exception_handlers(reply))
    with caplog.at_level(logging.ERROR):
        status, data = asgi_call(app)
    message = data["error"]["message"] if "error" in data else data["Err"]
    assert status == 500 and message.startswith("internal error: RuntimeError: a bug")
    assert not [r for r in caplog.records if r.name == "app.http_errors"], "uvicorn logs it; we must not log it twice"


@pytest.mark.needs_root
def test_unknown_paths_and_methods_on_the_control_socket_answer_in_its_shape(daemon):
    status, data = daemon.control("GET", "/nope")
    assert status == 404 and data["error"]["kind"] == "not_found" and "GET /v1/nope: no such endpoint" in data["error"]["message"]
    status, data = daemon.control("PUT", "/volumes")
    assert status == 405 and data["error"]["kind"] == "invalid" and "it takes" in data["error"]["message"], data
    connection = UnixHTTPConnection(daemon.plugin_socket, timeout=30)
    connection.request("POST", "/VolumeDriver.Nope", body=b"{}")
    assert connection.getresponse().status == 404, "Docker reads a 404 as 'not implemented': the plugin socket keeps it"
    connection.close()
    assert "Traceback" not in daemon.log_text()
