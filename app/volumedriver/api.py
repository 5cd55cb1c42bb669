"""Docker VolumeDriver protocol endpoints (docker.volumedriver/1.0).

Docker shows `Err` to the user as `<Method>: <Err>`, so the message is the
service's own user-facing text. Errors go out as HTTP 500 with `{"Err": ...}`,
which every Docker version accepts.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.backup_service import BackupService
from app.http_errors import describe, read_json
from app.service import VolumeService

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"


def _reply(payload: dict, status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status_code=status, media_type=CONTENT_TYPE)


def _docker_volume(view: dict) -> dict:
    return {"Name": view["name"], "Mountpoint": view["mountpoint"]}


def _docker_status(view: dict) -> dict:
    """What `docker volume inspect` shows under Status."""
    return {
        "driver": view["driver"],
        "size": view["size_human"],
        "created_at": view["created_at"],
        "mounted": view["mounted"],
        "mount_refs": view["mount_refs"],
        **{f"backend.{key}": value for key, value in view["backend"].items()},
    }


def build_app(service: VolumeService, backups: BackupService) -> Starlette:
    def handler(work):
        async def endpoint(request):
            try:
                body = await read_json(request)
                return _reply(await run_in_threadpool(work, body))
            except Exception as error:  # every failure reaches Docker as Err
                _, _, message = describe(error)
                return _reply({"Err": message}, 500)

        return endpoint

    def activate(_body):
        return {"Implements": ["VolumeDriver"]}

    def create(body):
        options = body.get("Opts") or {}
        if options.get("backup"):  # -o backup=URL: restore, within Docker's create deadline
            backups.restore_for_docker(body.get("Name"), options, service.settings.docker_restore_timeout)
        else:
            service.create(body.get("Name"), options, exist_ok=True)
        return {"Err": ""}

    def remove(body):
        service.delete_from_docker(body.get("Name"))
        return {"Err": ""}

    def mount(body):
        path = service.mount(body.get("Name"), str(body.get("ID") or ""), create=True)
        return {"Mountpoint": path, "Err": ""}

    def unmount(body):
        service.unmount(body.get("Name"), str(body.get("ID") or ""))
        return {"Err": ""}

    def path(body):
        return {"Mountpoint": service.path(body.get("Name")), "Err": ""}

    def get(body):
        view = service.get(body.get("Name"))
        volume = {**_docker_volume(view), "CreatedAt": view["created_at"], "Status": _docker_status(view)}
        return {"Volume": volume, "Err": ""}

    def list_volumes(_body):
        return {"Volumes": [_docker_volume(view) for view in service.list()], "Err": ""}

    scope = service.drivers[service.settings.default_driver].scope  # computed once: asked on every look-up

    async def capabilities(_request):
        return _reply({"Capabilities": {"Scope": scope}})

    routes = [
        Route("/Plugin.Activate", handler(activate), methods=["POST"]),
        Route("/VolumeDriver.Create", handler(create), methods=["POST"]),
        Route("/VolumeDriver.Remove", handler(remove), methods=["POST"]),
        Route("/VolumeDriver.Mount", handler(mount), methods=["POST"]),
        Route("/VolumeDriver.Unmount", handler(unmount), methods=["POST"]),
        Route("/VolumeDriver.Path", handler(path), methods=["POST"]),
        Route("/VolumeDriver.Get", handler(get), methods=["POST"]),
        Route("/VolumeDriver.List", handler(list_volumes), methods=["POST"]),
        Route("/VolumeDriver.Capabilities", capabilities, methods=["POST"]),
    ]
    return Starlette(routes=routes)
