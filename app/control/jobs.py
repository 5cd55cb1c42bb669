"""Control routes for snapshots, backups and the jobs that run them."""

from __future__ import annotations

from starlette.routing import Route

from app.backup_service import BackupService
from app.control.api import API_VERSION, create_options, json_endpoint
from app.errors import InvalidInput
from app.jobs import JobRunner
from app.snapshot_service import SnapshotService

PREFIX = f"/{API_VERSION}"


def _required(body: dict, key: str, example: str) -> str:
    value = body.get(key)
    if not value or not isinstance(value, str):
        raise InvalidInput(f"{key} is required, for example {example}")
    return value


def snapshot_routes(snapshots: SnapshotService) -> list[Route]:
    def create(request, body):
        return 201, snapshots.create(_required(body, "volume", "vol1"), body.get("name") or None)

    def list_snapshots(request, body):
        return 200, {"snapshots": snapshots.list(request.query_params.get("volume") or None)}

    def inspect(request, body):
        return 200, snapshots.get(request.path_params["name"])

    def delete(request, body):
        snapshots.delete(request.path_params["name"])
        return 200, {"deleted": request.path_params["name"]}

    return [
        Route(f"{PREFIX}/snapshots", json_endpoint(create), methods=["POST"]),
        Route(f"{PREFIX}/snapshots", json_endpoint(list_snapshots), methods=["GET"]),
        Route(f"{PREFIX}/snapshots/{{name}}", json_endpoint(inspect), methods=["GET"]),
        Route(f"{PREFIX}/snapshots/{{name}}", json_endpoint(delete), methods=["DELETE"]),
    ]


def backup_routes(backups: BackupService) -> list[Route]:
    """Long operations answer 202 with a job to poll at /v1/jobs/{id}."""

    def create(request, body):
        job = backups.create(
            _required(body, "snapshot", "snapshot-1"),
            _required(body, "dest", "vfs:///backups or s3://bucket@us-east-1/prefix"),
            body.get("s3_endpoint"),
            body.get("name") or None,
        )
        return 202, job.view()

    def list_backups(request, body):
        query = request.query_params
        dest = query.get("dest") or ""
        if not dest:
            raise InvalidInput("dest is required, for example vfs:///backups or s3://bucket@us-east-1/prefix")
        return 200, {"backups": backups.list(dest, query.get("volume") or None, query.get("s3_endpoint") or None)}

    def inspect(request, body):
        query = request.query_params
        return 200, backups.inspect(query.get("url") or "", query.get("s3_endpoint") or None)

    def delete(request, body):
        return 202, backups.delete(_required(body, "url", "vfs:///b?backup=B&volume=V"), body.get("s3_endpoint")).view()

    def verify(request, body):
        return 202, backups.verify(_required(body, "url", "vfs:///b?backup=B&volume=V"), body.get("s3_endpoint")).view()

    def restore(request, body):
        job = backups.restore(
            _required(body, "name", "restored1"),
            _required(body, "url", "vfs:///b?backup=B&volume=V"),
            create_options(body),
            body.get("s3_endpoint"),
        )
        return 202, job.view()

    return [
        Route(f"{PREFIX}/backups", json_endpoint(create), methods=["POST"]),
        Route(f"{PREFIX}/backups", json_endpoint(list_backups), methods=["GET"]),
        Route(f"{PREFIX}/backups/inspect", json_endpoint(inspect), methods=["GET"]),
        Route(f"{PREFIX}/backups/delete", json_endpoint(delete), methods=["POST"]),
        Route(f"{PREFIX}/backups/verify", json_endpoint(verify), methods=["POST"]),
        Route(f"{PREFIX}/restores", json_endpoint(restore), methods=["POST"]),
    ]


def job_routes(jobs: JobRunner) -> list[Route]:
    def list_jobs(request, body):
        return 200, {"jobs": [job.view() for job in jobs.list()]}

    def inspect(request, body):
        return 200, jobs.get(request.path_params["job_id"]).view()

    def cancel(request, body):
        job = jobs.get(request.path_params["job_id"])
        job.cancel.set()
        return 202, job.view()

    return [
        Route(f"{PREFIX}/jobs", json_endpoint(list_jobs), methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{job_id}}", json_endpoint(inspect), methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{job_id}}/cancel", json_endpoint(cancel), methods=["POST"]),
    ]
