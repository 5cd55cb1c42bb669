"""`convoy schedule ...`: snapshots (and backups) the daemon takes at set times, with a keep rule."""

from __future__ import annotations

import time
from urllib.parse import quote

import typer

from app.cli.context import client as _client
from app.cli.context import user_errors as _guard
from app.cli.flags import JsonFlag
from app.cli.output import EXIT_CODES, print_fields, print_json, print_table
from app.json_types import JSONObject

schedule_app = typer.Typer(help="Scheduled snapshots and backups, with retention.", no_args_is_help=True)
POLL_SECONDS = 0.2


def _path(name: str, suffix: str = "") -> str:
    return f"/schedules/{quote(name, safe='')}{suffix}"


@schedule_app.command("create")
@_guard
def schedule_create(
    name: str,
    volume: str | None = typer.Option(None, "--volume", help="the volume to snapshot"),
    all_volumes: bool = typer.Option(False, "--all", help="every volume, now and later (of --driver when given)"),
    driver: str | None = typer.Option(None, "--driver", help="with --all: only this back-end's volumes"),
    every: str | None = typer.Option(None, "--every", help="interval, e.g. 30m, 1h, 1d (runs on its multiples, UTC)"),
    cron: str | None = typer.Option(None, "--cron", help='cron expression in UTC, e.g. "0 3 * * *"'),
    dest: str | None = typer.Option(None, "--dest", help="also back up each snapshot here (vfs:///path, s3://...)"),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL for --dest (default: the daemon's)"),
    keep: str | None = typer.Option(None, "--keep", help="what to keep: last=N,hourly=N,daily=N,weekly=N,monthly=N"),
    as_json: bool = JsonFlag,
) -> None:
    """Create a schedule; prints its next run."""
    body = {
        "name": name,
        "volume": volume,
        "all": all_volumes,
        "driver": driver,
        "every": every,
        "cron": cron,
        "dest": dest,
        "s3_endpoint": s3_endpoint,
        "keep": keep,
    }
    schedule = _client().request("POST", "/schedules", body)
    print_json(schedule) if as_json else typer.echo(f"{schedule['name']}: next run {schedule['next_run']}")


@schedule_app.command("list")
@_guard
def schedule_list(as_json: bool = JsonFlag) -> None:
    """List schedules with their last and next runs."""
    schedules = _client().request("GET", "/schedules")["schedules"]
    if as_json:
        return print_json(schedules)
    rows = [
        [
            s["name"],
            "all" + (f" ({s['driver']})" if s["driver"] else "") if s["all"] else ", ".join(s["volumes"]),
            s["when"],
            s["keep"],
            s["dest"] or "-",
            s["next_run"],
            "running" if s["running"] else ("failed" if _failed_last(s) else ("ok" if s["last_run"] else "-")),
        ]
        for s in schedules
    ]
    print_table(["NAME", "VOLUMES", "WHEN", "KEEP", "DEST", "NEXT RUN", "LAST"], rows)


def _failed_last(schedule: JSONObject) -> bool:
    return bool(schedule["last_run"]) and schedule["last_run"] == schedule["last_error_at"]


@schedule_app.command("inspect")
@_guard
def schedule_inspect(name: str, as_json: bool = JsonFlag) -> None:
    """Show a schedule: its rule, last run, last success, last error and next run."""
    schedule = _client().request("GET", _path(name))
    print_json(schedule) if as_json else print_fields(schedule)


@schedule_app.command("delete")
@_guard
def schedule_delete(name: str) -> None:
    """Delete a schedule; the snapshots and backups it made stay."""
    _client().request("DELETE", _path(name))


@schedule_app.command("run")
@_guard
def schedule_run(name: str, as_json: bool = JsonFlag) -> None:
    """Run a schedule now and wait for it; exits non-zero when the run failed."""
    client = _client()
    before = client.request("POST", _path(name, "/run"), {})
    schedule = before
    while schedule["running"] or schedule["runs"] == before["runs"]:
        time.sleep(POLL_SECONDS)
        schedule = client.request("GET", _path(name))
    if as_json:
        print_json(schedule)
    elif _failed_last(schedule):
        typer.echo(f"convoy: schedule {name}: {schedule['last_error']}", err=True)
    else:
        typer.echo(f"{name}: ok, next run {schedule['next_run']}")
    if _failed_last(schedule):
        raise SystemExit(EXIT_CODES["error"])
