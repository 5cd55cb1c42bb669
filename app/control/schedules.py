"""Control routes for schedules (`convoy schedule ...`), and the test clock's route when a test set one."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.routing import Route

from app.control import schema
from app.control.api import API_VERSION, Reply, WorkerPools, json_endpoint
from app.errors import Unavailable
from app.schedule.clock import ManualClock
from app.schedule.runner import ScheduleRunner
from app.schedule.service import ScheduleService
from app.schedule.spec import iso, parse_iso

PREFIX = f"/{API_VERSION}"
SETTLE_TIMEOUT = 120.0  # seconds a test's clock move waits for the runs it started


def schedule_routes(schedules: ScheduleService, pools: WorkerPools) -> list[Route]:
    def create(request: Request, body: schema.ScheduleCreate) -> Reply:
        view = schedules.create(
            body["name"],
            volume=body.get("volume") or None,
            all_volumes=bool(body.get("all")),
            driver=body.get("driver") or None,
            every=body.get("every") or None,
            cron=body.get("cron") or None,
            dest=body.get("dest") or None,
            s3_endpoint=body.get("s3_endpoint") or None,
            keep=body.get("keep") or None,
        )
        return 201, view

    def list_schedules(request: Request, _: object) -> Reply:
        return 200, {"schedules": schedules.list()}

    def inspect(request: Request, _: object) -> Reply:
        return 200, schedules.inspect(request.path_params["name"])

    def delete(request: Request, _: object) -> Reply:
        schedules.delete(request.path_params["name"])
        return 200, {"deleted": request.path_params["name"]}

    def run(request: Request, _: object) -> Reply:
        return 202, schedules.run(request.path_params["name"])

    endpoint = partial(json_endpoint, pool=pools.control)
    return [
        Route(f"{PREFIX}/schedules", endpoint(create, body=schema.ScheduleCreate), methods=["POST"]),
        Route(f"{PREFIX}/schedules", endpoint(list_schedules), methods=["GET"]),
        Route(f"{PREFIX}/schedules/{{name}}", endpoint(inspect), methods=["GET"]),
        Route(f"{PREFIX}/schedules/{{name}}", endpoint(delete), methods=["DELETE"]),
        Route(f"{PREFIX}/schedules/{{name}}/run", endpoint(run, body=schema.NoFields), methods=["POST"]),
    ]


def test_clock_routes(clock: ManualClock, runner: ScheduleRunner, pools: WorkerPools) -> list[Route]:
    """POST /v1/test/clock {"now": ISO, "wait": bool}: move the daemon's clock (only when started with a test clock).

    With `wait` (the default) it answers once the runs due at that time have finished.
    """

    def move(request: Request, body: schema.TestClockMove) -> Reply:
        moment = parse_iso(body["now"])
        clock.set(moment)
        runner.wake()
        if body.get("wait", True) and not runner.settle(moment, SETTLE_TIMEOUT):
            raise Unavailable(f"the runs due at {iso(moment)} did not finish within {SETTLE_TIMEOUT:.0f} s")
        return 200, {"now": iso(clock.now())}

    endpoint = partial(json_endpoint, pool=pools.control)
    return [Route(f"{PREFIX}/test/clock", endpoint(move, body=schema.TestClockMove), methods=["POST"])]
