"""Control routes for snapshots, backups and the jobs that run them."""

from __future__ import annotations

import time
from functools import partial

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.backup_service import BackupService
from app.control import schema
from app.control.api import API_VERSION, Reply, WorkerPools, create_options, json_endpoint
from app.http_errors import read_query
from app.jobs import Job, JobRunner
from app.snapshot_service import SnapshotService

PREFIX = f"/{API_VERSION}"
WAIT_STEP = 0.005  # seconds between looks at a job a client waits on: the latency it adds


def snapshot_routes(snapshots: SnapshotService, pools: WorkerPools) -> list[Route]:
    def create(request: Request, body: schema.SnapshotCreate) -> Reply:
        return 201, snapshots.create(body["volume"], body.get("name") or None)

    def list_snapshots(request: Request, query: schema.SnapshotListQuery) -> Reply:
        return 200, {"snapshots": snapshots.list(query.get("volume") or None)}

    def inspect(request: Request, _: object) -> Reply:
        return 200, snapshots.get(request.path_params["name"])

    def delete(request: Request, _: object) -> Reply:
        snapshots.delete(request.path_params["name"])
        return 200, {"deleted": request.path_params["name"]}

    endpoint = partial(json_endpoint, pool=pools.control)
    return [
        Route(f"{PREFIX}/snapshots", endpoint(create, body=schema.SnapshotCreate), methods=["POST"]),
        Route(f"{PREFIX}/snapshots", endpoint(list_snapshots, query=schema.SnapshotListQuery), methods=["GET"]),
        Route(f"{PREFIX}/snapshots/{{name}}", endpoint(inspect), methods=["GET"]),
        Route(f"{PREFIX}/snapshots/{{name}}", endpoint(delete), methods=["DELETE"]),
    ]


def backup_routes(backups: BackupService, pools: WorkerPools) -> list[Route]:
    """Long operations answer 202 with a job to poll at /v1/jobs/{id}.

    Listing, inspecting and starting a restore wait on the store before they
    answer, so they run on the store pool; the others only check their input.
    """

    def create(request: Request, body: schema.BackupCreate) -> Reply:
        job = backups.create(body["snapshot"], body["dest"], body.get("s3_endpoint"), body.get("name") or None)
        return 202, job.view()

    def list_backups(request: Request, query: schema.BackupListQuery) -> Reply:
        return 200, {"backups": backups.list(query["dest"], query.get("volume") or None, query.get("s3_endpoint") or None)}

    def inspect(request: Request, query: schema.BackupInspectQuery) -> Reply:
        return 200, backups.inspect(query["url"], query.get("s3_endpoint") or None)

    def delete(request: Request, body: schema.BackupAction) -> Reply:
        return 202, backups.delete(body["url"], body.get("s3_endpoint")).view()

    def verify(request: Request, body: schema.BackupAction) -> Reply:
        return 202, backups.verify(body["url"], body.get("s3_endpoint")).view()

    def restore(request: Request, body: schema.RestoreCreate) -> Reply:
        job = backups.restore(body["name"], body["url"], create_options(body), body.get("s3_endpoint"))
        return 202, job.view()

    quick = partial(json_endpoint, pool=pools.control)
    waits_on_store = partial(json_endpoint, pool=pools.store)
    return [
        Route(f"{PREFIX}/backups", quick(create, body=schema.BackupCreate), methods=["POST"]),
        Route(f"{PREFIX}/backups", waits_on_store(list_backups, query=schema.BackupListQuery), methods=["GET"]),
        Route(f"{PREFIX}/backups/inspect", waits_on_store(inspect, query=schema.BackupInspectQuery), methods=["GET"]),
        Route(f"{PREFIX}/backups/delete", quick(delete, body=schema.BackupAction), methods=["POST"]),
        Route(f"{PREFIX}/backups/verify", quick(verify, body=schema.BackupAction), methods=["POST"]),
        Route(f"{PREFIX}/restores", waits_on_store(restore, body=schema.RestoreCreate), methods=["POST"]),
    ]


def job_routes(jobs: JobRunner, pools: WorkerPools) -> list[Route]:
    def list_jobs(request: Request, _: object) -> Reply:
        return 200, {"jobs": jobs.views()}

    async def inspect(request: Request) -> Response:
        """The job; with `?wait=S` while it runs, once it has ended or S seconds have passed, whichever is first."""
        query = read_query(request, schema.JobInspectQuery, f"the GET {request.url.path} request")
        job_id = request.path_params["job_id"]
        view = await anyio.to_thread.run_sync(jobs.view, job_id, limiter=pools.control)  # may read the catalog
        if view["state"] == "running" and query.get("wait", 0.0) > 0:
            await _until_done(jobs.get(job_id), query["wait"])
            view = jobs.get(job_id).view()
        return JSONResponse(view)

    def cancel(request: Request, _: object) -> Reply:
        view = jobs.view(request.path_params["job_id"])  # a finished one, even from before a restart: nothing to stop
        if view["state"] == "running":
            job = jobs.get(view["id"])
            job.cancel.set()
            view = job.view()
        return 202, view

    endpoint = partial(json_endpoint, pool=pools.control)
    return [
        Route(f"{PREFIX}/jobs", endpoint(list_jobs), methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{job_id}}", inspect, methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{job_id}}/cancel", endpoint(cancel, body=schema.NoFields), methods=["POST"]),
    ]


async def _until_done(job: Job, wait: float) -> None:
    """Sleep on the event loop, not in a worker thread: any number of clients may wait at
    once, and one that goes away costs nothing."""
    deadline = time.monotonic() + wait
    while not job.done.is_set() and time.monotonic() < deadline:
        await anyio.sleep(WAIT_STEP)
