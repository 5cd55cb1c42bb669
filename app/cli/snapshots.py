"""`convoy snapshot ...` and `convoy backup ...` and `convoy job ...`."""

from __future__ import annotations

from urllib.parse import quote

import typer

from app.cli import commands
from app.cli.context import client as _client
from app.cli.context import user_errors as _guard
from app.cli.flags import JsonFlag
from app.cli.output import EXIT_CODES, print_fields, print_json
from app.cli.progress import run_job

snapshot_app = typer.Typer(help="Snapshots of volumes, kept on this host.", no_args_is_help=True)
backup_app = typer.Typer(help="Backups of snapshots to vfs:// or s3:// stores.", no_args_is_help=True)
job_app = typer.Typer(help="Long operations running in the daemon.", no_args_is_help=True)

EndpointOption = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL for MinIO, Ceph... (default: the daemon's)")


@snapshot_app.command("create")
@_guard
def snapshot_create(volume: str, name: str | None = typer.Option(None, "--name"), as_json: bool = JsonFlag) -> None:
    """Take a snapshot of a volume; prints its name."""
    commands.create_snapshot(volume, name, as_json)


@snapshot_app.command("delete")
@_guard
def snapshot_delete(name: str) -> None:
    """Delete a snapshot."""
    _client().request("DELETE", f"/snapshots/{quote(name, safe='')}")


@snapshot_app.command("inspect")
@_guard
def snapshot_inspect(name: str, as_json: bool = JsonFlag) -> None:
    """Show a snapshot (and whether it is a reflink or a copy)."""
    snapshot = _client().request("GET", f"/snapshots/{quote(name, safe='')}")
    print_json(snapshot) if as_json else print_fields(snapshot)


@snapshot_app.command("list")
@_guard
def snapshot_list(volume: str | None = typer.Argument(None), as_json: bool = JsonFlag) -> None:
    """List snapshots, of one volume or of all."""
    commands.list_snapshots(volume, as_json)


@backup_app.command("create")
@_guard
def backup_create(
    snapshot: str,
    dest: str = typer.Option(..., "--dest", help="vfs:///path or s3://bucket@region/prefix"),
    s3_endpoint: str | None = EndpointOption,
    name: str | None = typer.Option(None, "--name", help="backup name (default backup-<hex>)"),
    as_json: bool = JsonFlag,
) -> None:
    """Back up a snapshot; prints the backup URL."""
    commands.create_backup(snapshot, dest, s3_endpoint, name, as_json)


@backup_app.command("list")
@_guard
def backup_list(
    dest: str,
    volume_name: str | None = typer.Option(None, "--volume-name"),
    s3_endpoint: str | None = EndpointOption,
    as_json: bool = JsonFlag,
) -> None:
    """List the backups in a store."""
    commands.list_backups(dest, volume_name, s3_endpoint, as_json)


@backup_app.command("inspect")
@_guard
def backup_inspect(url: str, s3_endpoint: str | None = EndpointOption, as_json: bool = JsonFlag) -> None:
    """Show one backup."""
    query = {"url": url, **({"s3_endpoint": s3_endpoint} if s3_endpoint else {})}
    backup = _client().request("GET", "/backups/inspect", query=query)
    print_json(backup) if as_json else print_fields(backup)


@backup_app.command("delete")
@_guard
def backup_delete(url: str, s3_endpoint: str | None = EndpointOption, as_json: bool = JsonFlag) -> None:
    """Delete a backup and the blocks no other backup uses."""
    result = run_job(_client(), "/backups/delete", {"url": url, "s3_endpoint": s3_endpoint})
    if as_json:
        print_json(result)
    elif result.get("warning"):
        typer.echo(f"convoy: {result['warning']}", err=True)


@backup_app.command("verify")
@_guard
def backup_verify(url: str, s3_endpoint: str | None = EndpointOption, as_json: bool = JsonFlag) -> None:
    """Read and check every block of a backup without restoring it."""
    result = run_job(_client(), "/backups/verify", {"url": url, "s3_endpoint": s3_endpoint})
    if as_json:
        print_json(result)
    else:
        typer.echo(result.get("message") or ("ok" if result.get("ok") else "damaged"))
    if not result.get("ok", False):
        raise SystemExit(EXIT_CODES["damaged"])


@job_app.command("list")
@_guard
def job_list(as_json: bool = JsonFlag) -> None:
    """List the daemon's recent jobs."""
    commands.list_jobs(as_json)


@job_app.command("inspect")
@_guard
def job_inspect(job_id: str, as_json: bool = JsonFlag) -> None:
    """Show a job and its progress."""
    job = _client().request("GET", f"/jobs/{quote(job_id, safe='')}")
    print_json(job) if as_json else print_fields(job)


@job_app.command("cancel")
@_guard
def job_cancel(job_id: str) -> None:
    """Cancel a running job; what it did is undone or left for the next run to reuse."""
    _client().request("POST", f"/jobs/{quote(job_id, safe='')}/cancel", {})
