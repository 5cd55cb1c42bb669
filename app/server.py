"""Serve the Docker and control apps on their sockets in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import metrics
from app.backup_service import BackupService
from app.control.api import WorkerPools
from app.control.api import build_app as build_control_app
from app.control.jobs import backup_routes, job_routes, snapshot_routes
from app.control.schedules import schedule_routes, test_clock_routes
from app.control.stores import store_routes
from app.jobs import JobRunner
from app.schedule import events
from app.schedule.clock import ManualClock, clock_from_env
from app.schedule.runner import ScheduleRunner
from app.schedule.service import ScheduleService
from app.service import VolumeService
from app.snapshot_service import SnapshotService
from app.volumedriver.api import build_app as build_plugin_app


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us (two servers share one loop) and says when it serves."""

    def __init__(self, config: uvicorn.Config, serving: Callable[[], None]):
        super().__init__(config)
        self._serving = serving

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._serving()


def _server(app: Starlette, serving: Callable[[], None]) -> _Server:
    # log_config=None: uvicorn's lines go through the daemon's own handler, in its format (text or json)
    config = uvicorn.Config(
        app, log_level="warning", log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=10
    )
    return _Server(config, serving)


def metrics_route(pool: anyio.CapacityLimiter) -> Route:
    """GET /metrics in Prometheus's text format; the scrape reads the catalog, on a worker thread."""

    async def scrape(_request: Request) -> Response:
        body = await anyio.to_thread.run_sync(metrics.exposition, limiter=pool)
        return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)

    return Route("/metrics", scrape, methods=["GET"])


def serve(
    service: VolumeService,
    plugin_socket: socket.socket,
    control_socket: socket.socket,
    when_serving: Callable[[], None] = lambda: None,
    metrics_socket: socket.socket | None = None,
) -> None:
    """Wire the services to both adapters and serve until SIGTERM or SIGINT.

    Each adapter runs its blocking work on its own worker threads: Docker's
    calls never queue behind the CLI's or behind a store that does not answer.
    `when_serving` runs once both servers answer (the daemon's start-up work:
    started earlier, it would hold the interpreter while they get ready).
    """
    jobs = JobRunner(service.catalog, instrument=metrics.metered_job)  # marks the jobs a stop interrupted, before any request
    metrics.watch(service.catalog, service.drivers, lambda: [job.kind for job in jobs.running()])
    snapshots = SnapshotService(service)
    backups = BackupService(service, snapshots, jobs)
    pools = WorkerPools()
    extra_routes = snapshot_routes(snapshots, pools) + backup_routes(backups, pools) + job_routes(jobs, pools)
    schedule_runner, more_routes = _schedules(service, snapshots, backups, pools)
    extra_routes += more_routes
    extra_routes += store_routes(backups, pools)  # convoy store init (issue 13, encrypted stores)
    extra_routes.append(metrics_route(pools.control))
    waiting = 2  # servers not serving yet (the metrics-only TCP server is not waited for)

    def one_serving() -> None:
        nonlocal waiting
        waiting -= 1
        if waiting == 0:
            when_serving()

    servers = [
        _server(build_plugin_app(service, backups), one_serving),
        _server(build_control_app(service, pools, extra_routes), one_serving),
    ]
    listening = [plugin_socket, control_socket]
    if metrics_socket is not None:  # --metrics-addr: /metrics alone, for a Prometheus on the network
        servers.append(_server(Starlette(routes=[metrics_route(pools.control)]), lambda: None))
        listening.append(metrics_socket)

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for server in servers:
                server.should_exit = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in zip(servers, listening, strict=True)))

    schedule_runner.start()
    try:
        asyncio.run(main())
    finally:
        schedule_runner.stop()


def _schedules(
    service: VolumeService, snapshots: SnapshotService, backups: BackupService, pools: WorkerPools
) -> tuple[ScheduleRunner, list[Route]]:
    """Schedules, run by a runner on the system clock (a test's hand-moved one under CONVOY_TEST_CLOCK)."""
    clock = clock_from_env()
    schedules = ScheduleService(service, snapshots, backups, clock.now)
    events.on_daemon_start((entry.schedule.name, entry.state.last_success) for entry in schedules.records.all())
    service.schedules = schedules
    runner = ScheduleRunner(schedules, clock, service.wait_started)
    routes = schedule_routes(schedules, pools)
    if isinstance(clock, ManualClock):
        routes += test_clock_routes(clock, runner, pools)
    return runner, routes
