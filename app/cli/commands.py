"""What the commands a script calls most do, apart from their command line.

Typer's commands (app/cli/main.py, app/cli/snapshots.py) and the quick path
(app/cli/quick.py) both call these, so the two cannot answer differently.
No typer here.
"""

from __future__ import annotations

import sys
import time

from app.cli.client import volume_path
from app.cli.context import client
from app.cli.output import print_fields, print_json, print_table


def list_volumes(as_json: bool) -> None:
    volumes = client().request("GET", "/volumes")["volumes"]
    if as_json:
        return print_json(volumes)
    rows = [
        [v["name"], v["driver"], v["size_human"], v["mount_refs"], v["mountpoint"] if v["mounted"] else "-", v["created_at"]]
        for v in volumes
    ]
    print_table(["NAME", "DRIVER", "SIZE", "REFS", "MOUNTED AT", "CREATED"], rows)


def inspect_volume(name: str, as_json: bool) -> None:
    volume = client().request("GET", volume_path(name))
    print_json(volume) if as_json else print_fields(volume)


def show_info(as_json: bool) -> None:
    result = client().request("GET", "/info")
    print_json(result) if as_json else print_fields(result)


def create_snapshot(volume: str, name: str | None, as_json: bool) -> None:
    snapshot = client().request("POST", "/snapshots", {"volume": volume, "name": name})
    print_json(snapshot) if as_json else print(snapshot["name"])


def create_backup(snapshot: str, dest: str, s3_endpoint: str | None, name: str | None, as_json: bool) -> None:
    from app.cli.progress import run_job

    body = {"snapshot": snapshot, "dest": dest, "s3_endpoint": s3_endpoint, "name": name}
    result = run_job(client(), "/backups", body)
    print_json(result) if as_json else print(result["url"])


def list_snapshots(volume: str | None, as_json: bool) -> None:
    snapshots = client().request("GET", "/snapshots", query={"volume": volume} if volume else None)["snapshots"]
    if as_json:
        return print_json(snapshots)
    print_table(
        ["NAME", "VOLUME", "CREATED", "METHOD"], [[s["name"], s["volume"], s["created_at"], s["method"]] for s in snapshots]
    )


def list_backups(dest: str, volume_name: str | None, s3_endpoint: str | None, as_json: bool) -> None:
    query = {
        "dest": dest,
        **({"volume": volume_name} if volume_name else {}),
        **({"s3_endpoint": s3_endpoint} if s3_endpoint else {}),
    }
    backups = client().request("GET", "/backups", query=query)["backups"]
    if as_json:
        return print_json(backups)
    print_table(
        ["URL", "VOLUME", "SNAPSHOT", "CREATED"],
        [
            [b["url"], b.get("volume"), "-", "UNREADABLE"]
            if b.get("error")
            else [b["url"], b.get("volume"), b.get("snapshot"), b.get("created_at")]
            for b in backups
        ],
    )
    for b in backups:  # why each unreadable one is, after the table
        if b.get("error"):
            print(f"convoy: {b['url']}: {b['error']}", file=sys.stderr, flush=True)


def list_jobs(as_json: bool) -> None:
    jobs = client().request("GET", "/jobs")["jobs"]
    if as_json:
        return print_json(jobs)
    rows = [[j["id"], j["kind"], j["state"], _utc(j["started"]), _utc(j.get("finished")), j["description"]] for j in jobs]
    print_table(["ID", "KIND", "STATE", "STARTED", "ENDED", "DESCRIPTION"], rows)


def _utc(epoch: float | None) -> str:
    """A job's time as the table shows it (an interrupted job ended when the next start found it)."""
    return "-" if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
