"""Docker VolumeDriver protocol endpoints (docker.volumedriver/1.0).

Docker shows `Err` to the user as `<Method>: <Err>`, so the message is the
service's own user-facing text. Errors go out with their HTTP status (500
for a user error, as Docker's own plugin helpers send; 413 for a body over
the cap) and `{"Err": ...}`, which every Docker version shows as is; the
app's exception handlers (`app.http_errors.exception_handlers`) send them.
An unknown endpoint keeps Starlette's plain 404: Docker reads a 404 as "not
implemented" for optional calls.

The handlers run on this app's own worker threads: whatever the control
socket or a slow backup store is doing, Docker's calls never wait for a
thread (Docker marks a plugin that does not answer as failed). A create from
a backup waits on its store for up to --docker-restore-timeout, so those run
on threads of their own too, and cannot hold up Docker's List, Get or Mount.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import logs, metrics
from app.backup_service import BackupService
from app.http_errors import exception_handlers, read_request
from app.json_types import JSONObject
from app.service import VolumeService
from app.volumedriver import schema

T = TypeVar("T")
log = logging.getLogger(__name__)
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
# calls that change something are logged at info (with their request id); look-ups at debug
CHANGES = frozenset({"Create", "Remove", "Mount", "Unmount"})
WORKER_THREADS = 32  # Docker calls Get for every volume at once after a restart
RESTORE_THREADS = 32  # creates from a backup (-o backup=URL), each waiting on a store


def _reply(payload: JSONObject, status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status_code=status, media_type=CONTENT_TYPE)


def _error_reply(status: int, _kind: str, message: str) -> JSONResponse:
    """Every failure reaches Docker as Err: 413 for a body over the cap, else 500."""
    return _reply({"Err": message}, 413 if status == 413 else 500)


def _docker_volume(view: JSONObject) -> JSONObject:
    return {"Name": view["name"], "Mountpoint": view["mountpoint"]}


def _docker_status(view: JSONObject) -> JSONObject:
    """What `docker volume inspect` shows under Status."""
    return {
        "driver": view["driver"],
        "size": view["size_human"],
        "created_at": view["created_at"],
        "mounted": view["mounted"],
        "mount_refs": view["mount_refs"],
        **({"restoring_from": view["restoring_from"]} if view.get("restoring_from") else {}),
        **{f"backend.{key}": value for key, value in view["backend"].items()},
    }


def _restores(body: schema.CreateRequest) -> bool:
    """A create with `-o backup=URL`: a restore, not an empty volume."""
    return bool((body.get("Opts") or {}).get("backup"))


def build_app(service: VolumeService, backups: BackupService) -> Starlette:
    workers = anyio.CapacityLimiter(WORKER_THREADS)
    restore_workers = anyio.CapacityLimiter(RESTORE_THREADS)

    def handler(
        method: str,
        request_schema: type[T],
        work: Callable[[T], JSONObject],
        blocking: bool = True,
        pool: Callable[[T], anyio.CapacityLimiter] | None = None,
    ) -> Route:
        """A route for `work(body)`; blocking work runs on `pool(body)`'s threads
        (Docker's workers by default), the rest on the loop."""
        what = f"Docker's {method} request"

        async def endpoint(request: Request) -> Response:
            with metrics.operation("docker", method), logs.bound(request_id=logs.new_request_id()):
                return await answer(request)

        async def answer(request: Request) -> Response:
            started = time.perf_counter()
            body = await read_request(request, request_schema, what)
            name = body.get("Name", "") if isinstance(body, dict) else ""
            with logs.bound(volume=name):
                failed = ""
                try:
                    if not blocking:
                        return _reply(work(body))
                    limiter = pool(body) if pool else workers
                    return _reply(await anyio.to_thread.run_sync(partial(work, body), limiter=limiter))
                except BaseException as error:
                    failed = f" (failed: {metrics.error_kind(error)})"
                    raise
                finally:
                    # How long each of Docker's calls took, failed ones too, with the call's request id (the
                    # parallel-containers benchmark reads Mount's from here, at CONVOY_LOG_LEVEL=debug)
                    level = logging.INFO if method in CHANGES or failed else logging.DEBUG
                    elapsed_ms = 1000 * (time.perf_counter() - started)
                    log.log(level, "Docker %s %s: %.1f ms%s request=%s", method, name, elapsed_ms, failed, logs.request_id.get())

        return Route(f"/{'Plugin' if method == 'Activate' else 'VolumeDriver'}.{method}", endpoint, methods=["POST"])

    def activate(_body: schema.NoFields) -> JSONObject:
        return {"Implements": ["VolumeDriver"]}

    def create(body: schema.CreateRequest) -> JSONObject:
        name, options = body.get("Name", ""), body.get("Opts") or {}
        if _restores(body):  # within Docker's create deadline
            backups.restore_for_docker(name, options, service.settings.docker_restore_timeout)
        else:
            service.create(name, options, exist_ok=True)
        return {"Err": ""}

    def remove(body: schema.NameRequest) -> JSONObject:
        service.delete_from_docker(body.get("Name", ""))
        return {"Err": ""}

    def mount(body: schema.MountRequest) -> JSONObject:
        path = service.mount(body.get("Name", ""), body.get("ID", ""), create=True)
        return {"Mountpoint": path, "Err": ""}

    def unmount(body: schema.MountRequest) -> JSONObject:
        service.unmount(body.get("Name", ""), body.get("ID", ""))
        return {"Err": ""}

    def path(body: schema.NameRequest) -> JSONObject:
        return {"Mountpoint": service.path(body.get("Name", "")), "Err": ""}

    def get(body: schema.NameRequest) -> JSONObject:
        view = service.get(body.get("Name", ""))
        volume = {**_docker_volume(view), "CreatedAt": view["created_at"], "Status": _docker_status(view)}
        return {"Volume": volume, "Err": ""}

    def list_volumes(_body: schema.NoFields) -> JSONObject:
        return {"Volumes": [_docker_volume(view) for view in service.list()], "Err": ""}

    scope = service.drivers[service.settings.default_driver].scope  # computed once: asked on every look-up

    def capabilities(_body: schema.NoFields) -> JSONObject:
        return {"Capabilities": {"Scope": scope}}

    routes = [
        handler("Activate", schema.NoFields, activate, blocking=False),
        handler("Create", schema.CreateRequest, create, pool=lambda body: restore_workers if _restores(body) else workers),
        handler("Remove", schema.NameRequest, remove),
        handler("Mount", schema.MountRequest, mount),
        handler("Unmount", schema.MountRequest, unmount),
        handler("Path", schema.NameRequest, path),
        handler("Get", schema.NameRequest, get),
        handler("List", schema.NoFields, list_volumes),
        handler("Capabilities", schema.NoFields, capabilities, blocking=False),
    ]
    return Starlette(routes=routes, exception_handlers=exception_handlers(_error_reply))
