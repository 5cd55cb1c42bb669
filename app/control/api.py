"""HTTP/JSON control API, a thin adapter over the volume service.

Routes live under /v1. Errors are `{"error": {"kind", "message"}}` with the
status from `app.http_errors`, sent by the app's exception handlers (routes
only raise); an unknown path or method gets the same shape. Every endpoint
names its body or query schema (`app/control/schema.py`) and the worker pool
its blocking work runs on.
Snapshots, backups and jobs mount their own route lists here
(`extra_routes`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar, cast

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import logs, metrics
from app.control import schema
from app.http_errors import exception_handlers, read_query, read_request
from app.json_types import JSONObject
from app.service import CLI_REF_PREFIX, VolumeService

API_VERSION = "v1"
T = TypeVar("T")
Reply = tuple[int, JSONObject]  # (HTTP status, JSON payload) of a route's work


@dataclass(frozen=True)
class WorkerPools:
    """The control socket's worker threads, apart from Docker's (app.volumedriver.api).

    Requests that wait on a backup store (a slow or silent S3 endpoint can
    hold one for minutes) have a pool of their own, so `convoy list` and the
    job polls of progress bars still answer while they wait.
    """

    control: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(32))
    store: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(16))


def json_endpoint(
    work: Callable[[Request, T], Reply],
    pool: anyio.CapacityLimiter,
    *,
    body: type[T] | None = None,
    query: type[T] | None = None,
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap blocking `work(request, data)` into an endpoint.

    `data` is the body read against the `body` schema, or the query string
    read against the `query` schema, or `{}` when the endpoint takes neither.
    """

    async def endpoint(request: Request) -> Response:
        route = getattr(request.scope.get("route"), "path", request.url.path)  # /v1/volumes/{name}, not each name
        with metrics.operation("control", f"{request.method} {route}"), logs.bound(request_id=logs.new_request_id()):
            return await answer(request)

    async def answer(request: Request) -> Response:
        what = f"the {request.method} {request.url.path} request"
        data: T
        if body is not None:
            data = await read_request(request, body, what)
        elif query is not None:
            data = read_query(request, query, what)
        else:
            data = cast(T, {})  # an endpoint without a schema declares its data as `object`
        with logs.bound(volume=_volume_named(request, data)):
            status, payload = await anyio.to_thread.run_sync(partial(work, request, data), limiter=pool)
        return JSONResponse(payload, status_code=status)

    return endpoint


def _volume_named(request: Request, data: object) -> str | None:
    """The volume a request names, for its log lines: in the path (/v1/volumes/NAME/...), as the new
    volume of a create or restore, or as a `volume` field; a backup's request names it later, in the service."""
    path = request.url.path
    if path.startswith(f"/{API_VERSION}/volumes/"):
        return str(request.path_params.get("name") or "") or None
    if not isinstance(data, dict):
        return None
    creates = request.method == "POST" and path in (f"/{API_VERSION}/volumes", f"/{API_VERSION}/restores")
    value = data.get("name") if creates else data.get("volume")
    return value if isinstance(value, str) and value else None


def _error_reply(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"kind": kind, "message": message}}, status_code=status)


async def _no_such_route(request: Request, error: Exception) -> JSONResponse:
    """Starlette's own 404 and 405, in the API's error shape (the CLI reads no other)."""
    if not isinstance(error, HTTPException):  # registered for HTTPException alone
        raise error
    where = f"{request.method} {request.url.path}"
    if error.status_code == 404:
        return _error_reply(404, "not_found", f"{where}: no such endpoint in convoy's control API (/{API_VERSION})")
    allowed = (error.headers or {}).get("Allow")
    hint = f"; it takes {allowed}" if allowed else ""
    return _error_reply(error.status_code, "invalid", f"{where}: {error.detail}{hint}")


def create_options(body: schema.VolumeCreate) -> dict[str, str]:
    """A create request's options, with `driver` and `size` given as fields folded in."""
    options = dict(body.get("options") or {})
    if driver := body.get("driver"):
        options["driver"] = driver
    if size := body.get("size"):
        options["size"] = size
    return options


def volume_routes(service: VolumeService, pools: WorkerPools) -> list[Route]:
    def info(request: Request, _: object) -> Reply:
        return 200, service.info()

    def list_volumes(request: Request, _: object) -> Reply:
        return 200, {"volumes": service.list()}

    def create(request: Request, body: schema.VolumeCreate) -> Reply:
        return 201, service.create(body["name"], create_options(body), exist_ok=False)

    def inspect(request: Request, _: object) -> Reply:
        return 200, service.get(request.path_params["name"])

    def delete(request: Request, query: schema.VolumeDeleteQuery) -> Reply:
        service.delete(request.path_params["name"], keep_data=query.get("reference_only", False))
        return 200, {"deleted": request.path_params["name"]}

    def mount(request: Request, body: schema.VolumeMount) -> Reply:
        name = request.path_params["name"]
        extra = body.get("mountpoint") or None
        ref_id = f"{CLI_REF_PREFIX}:{extra}" if extra else CLI_REF_PREFIX
        return 200, {"name": name, "mountpoint": service.mount(name, ref_id, extra_mountpoint=extra)}

    def resize(request: Request, body: schema.VolumeResize) -> Reply:
        return 200, service.resize(request.path_params["name"], body["size"])

    def umount(request: Request, _: object) -> Reply:
        service.unmount_cli(request.path_params["name"])
        return 200, {"name": request.path_params["name"]}

    endpoint = partial(json_endpoint, pool=pools.control)
    prefix = f"/{API_VERSION}"
    return [
        Route(f"{prefix}/info", endpoint(info), methods=["GET"]),
        Route(f"{prefix}/volumes", endpoint(list_volumes), methods=["GET"]),
        Route(f"{prefix}/volumes", endpoint(create, body=schema.VolumeCreate), methods=["POST"]),
        Route(f"{prefix}/volumes/{{name}}", endpoint(inspect), methods=["GET"]),
        Route(f"{prefix}/volumes/{{name}}", endpoint(delete, query=schema.VolumeDeleteQuery), methods=["DELETE"]),
        Route(f"{prefix}/volumes/{{name}}/mount", endpoint(mount, body=schema.VolumeMount), methods=["POST"]),
        Route(f"{prefix}/volumes/{{name}}/umount", endpoint(umount, body=schema.NoFields), methods=["POST"]),
        Route(f"{prefix}/volumes/{{name}}/resize", endpoint(resize, body=schema.VolumeResize), methods=["POST"]),
    ]


def build_app(service: VolumeService, pools: WorkerPools, extra_routes: list[Route] | None = None) -> Starlette:
    handlers = {**exception_handlers(_error_reply), HTTPException: _no_such_route}
    return Starlette(routes=volume_routes(service, pools) + list(extra_routes or []), exception_handlers=handlers)
