"""HTTP/JSON control API, a thin adapter over the volume service.

Routes live under /v1. Errors are `{"error": {"kind", "message"}}` with the
status from `app.http_errors`. Snapshots, backups and jobs mount their own
route lists here as they arrive (`extra_routes`).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.errors import InvalidInput
from app.http_errors import describe, read_json
from app.service import CLI_REF_PREFIX, VolumeService

API_VERSION = "v1"


def json_endpoint(work):
    """Wrap `work(request, body)` (blocking) into an endpoint with uniform errors."""

    async def endpoint(request):
        try:
            body = await read_json(request) if request.method in ("POST", "PUT") else {}
            status, payload = await run_in_threadpool(work, request, body)
            return JSONResponse(payload, status_code=status)
        except Exception as error:
            status, kind, message = describe(error)
            return JSONResponse({"error": {"kind": kind, "message": message}}, status_code=status)

    return endpoint


def _flag(request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def create_options(body: dict) -> dict[str, str]:
    """A create request's options, with `driver` and `size` given as fields folded in."""
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise InvalidInput("options must be an object of KEY: VALUE strings")
    for key in ("driver", "size"):
        if body.get(key):
            options[key] = str(body[key])
    return options


def volume_routes(service: VolumeService) -> list[Route]:
    def info(request, body):
        return 200, service.info()

    def list_volumes(request, body):
        return 200, {"volumes": service.list()}

    def create(request, body):
        return 201, service.create(body.get("name"), create_options(body), exist_ok=False)

    def inspect(request, body):
        return 200, service.get(request.path_params["name"])

    def delete(request, body):
        service.delete(request.path_params["name"], keep_data=_flag(request, "reference_only"))
        return 200, {"deleted": request.path_params["name"]}

    def mount(request, body):
        name = request.path_params["name"]
        extra = body.get("mountpoint") or None
        ref_id = f"{CLI_REF_PREFIX}:{extra}" if extra else CLI_REF_PREFIX
        return 200, {"name": name, "mountpoint": service.mount(name, ref_id, extra_mountpoint=extra)}

    def umount(request, body):
        service.unmount_cli(request.path_params["name"])
        return 200, {"name": request.path_params["name"]}

    prefix = f"/{API_VERSION}"
    return [
        Route(f"{prefix}/info", json_endpoint(info), methods=["GET"]),
        Route(f"{prefix}/volumes", json_endpoint(list_volumes), methods=["GET"]),
        Route(f"{prefix}/volumes", json_endpoint(create), methods=["POST"]),
        Route(f"{prefix}/volumes/{{name}}", json_endpoint(inspect), methods=["GET"]),
        Route(f"{prefix}/volumes/{{name}}", json_endpoint(delete), methods=["DELETE"]),
        Route(f"{prefix}/volumes/{{name}}/mount", json_endpoint(mount), methods=["POST"]),
        Route(f"{prefix}/volumes/{{name}}/umount", json_endpoint(umount), methods=["POST"]),
    ]


def build_app(service: VolumeService, extra_routes: list[Route] | None = None) -> Starlette:
    return Starlette(routes=volume_routes(service) + list(extra_routes or []))
