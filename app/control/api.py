"""HTTP/JSON control API, a thin adapter over the volume service.

Routes live under /v1. Errors are `{"error": {"kind", "message"}}` with the
status from `app.http_errors`. Every endpoint names its body or query schema
(`app/control/schema.py`) and the worker pool its blocking work runs on.
Snapshots, backups and jobs mount their own route lists here
(`extra_routes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import anyio
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.control import schema
from app.http_errors import describe, read_query, read_request
from app.service import CLI_REF_PREFIX, VolumeService

API_VERSION = "v1"


@dataclass(frozen=True)
class WorkerPools:
    """The control socket's worker threads, apart from Docker's (app.volumedriver.api).

    Requests that wait on a backup store (a slow or silent S3 endpoint can
    hold one for minutes) have a pool of their own, so `convoy list` and the
    job polls of progress bars still answer while they wait.
    """

    control: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(32))
    store: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(16))


def json_endpoint(work, pool: anyio.CapacityLimiter, *, body=None, query=None):
    """Wrap blocking `work(request, data)` into an endpoint with uniform errors.

    `data` is the body read against the `body` schema, or the query string
    read against the `query` schema, or `{}` when the endpoint takes neither.
    """

    async def endpoint(request):
        what = f"the {request.method} {request.url.path} request"
        try:
            if body is not None:
                data = await read_request(request, body, what)
            elif query is not None:
                data = read_query(request, query, what)
            else:
                data = {}
            status, payload = await anyio.to_thread.run_sync(partial(work, request, data), limiter=pool)
            return JSONResponse(payload, status_code=status)
        except Exception as error:
            status, kind, message = describe(error)
            return JSONResponse({"error": {"kind": kind, "message": message}}, status_code=status)

    return endpoint


def create_options(body: schema.VolumeCreate) -> dict[str, str]:
    """A create request's options, with `driver` and `size` given as fields folded in."""
    options = dict(body.get("options") or {})
    for key in ("driver", "size"):
        value = body.get(key)
        if value:
            options[key] = value
    return options


def volume_routes(service: VolumeService, pools: WorkerPools) -> list[Route]:
    def info(request, _):
        return 200, service.info()

    def list_volumes(request, _):
        return 200, {"volumes": service.list()}

    def create(request, body: schema.VolumeCreate):
        return 201, service.create(body["name"], create_options(body), exist_ok=False)

    def inspect(request, _):
        return 200, service.get(request.path_params["name"])

    def delete(request, query: schema.VolumeDeleteQuery):
        service.delete(request.path_params["name"], keep_data=query.get("reference_only", False))
        return 200, {"deleted": request.path_params["name"]}

    def mount(request, body: schema.VolumeMount):
        name = request.path_params["name"]
        extra = body.get("mountpoint") or None
        ref_id = f"{CLI_REF_PREFIX}:{extra}" if extra else CLI_REF_PREFIX
        return 200, {"name": name, "mountpoint": service.mount(name, ref_id, extra_mountpoint=extra)}

    def resize(request, body: schema.VolumeResize):
        return 200, service.resize(request.path_params["name"], body["size"])

    def umount(request, _):
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
    return Starlette(routes=volume_routes(service, pools) + list(extra_routes or []))
