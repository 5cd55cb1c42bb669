"""`convoy`: drive the daemon through its control socket, or run the daemon."""

from __future__ import annotations

import os
import sys
from urllib.parse import quote

import typer

from app.cli import commands
from app.cli.client import volume_path
from app.cli.context import client, state, user_errors
from app.cli.flags import JsonFlag
from app.cli.output import exit_code_for, exit_now, fail, print_json
from app.control_socket import DEFAULT_CONTROL_SOCKET
from app.errors import ConvoyError
from app.key_values import parse_key_values

app = typer.Typer(
    help="Convoy: Docker volumes with snapshots, backups and restores.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"convoy {version('convoy-py')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("convoy (version unknown: not installed; `pip install -e .` in the checkout)")
        raise typer.Exit()


@app.callback()
def root(
    socket: str | None = typer.Option(
        None, "--socket", envvar="CONVOY_SOCKET", help=f"control socket of the daemon [default: {DEFAULT_CONTROL_SOCKET}]"
    ),
    _version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"),
) -> None:
    state["socket"] = socket


@app.command()
@user_errors
def create(
    name: str,
    driver: str | None = typer.Option(None, "--driver", help="back-end (default: the daemon's first driver)"),
    size: str | None = typer.Option(None, "--size", help="size, e.g. 10G"),
    opt: list[str] = typer.Option([], "-o", "--opt", help="back-end option KEY=VALUE (repeatable)"),
    backup: str | None = typer.Option(None, "--backup", help="restore the new volume from this backup URL"),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="S3 endpoint URL for the backup"),
    as_json: bool = JsonFlag,
) -> None:
    """Create a volume (from a backup with --backup)."""
    options = parse_key_values(opt, "option")
    backup = backup or options.pop("backup", None)
    body = {"name": name, "driver": driver, "size": size, "options": options}
    if backup:
        from app.cli.progress import run_job

        result = run_job(client(), "/restores", {**body, "url": backup, "s3_endpoint": s3_endpoint})
        return print_json(result) if as_json else typer.echo(name)
    volume = client().request("POST", "/volumes", body)
    print_json(volume) if as_json else typer.echo(volume["name"])


@app.command()
@user_errors
def delete(
    names: list[str] = typer.Argument(..., help="volumes to delete"),
    reference_only: bool = typer.Option(False, "-r", "--reference-only", help="forget the volume, keep its data"),
    snapshots: bool = typer.Option(False, "--snapshots", help="delete the volume's snapshots first (those kept as backups stay)"),
) -> None:
    """Delete volumes and their data (-r: only convoy's reference, keeping the data)."""
    failed = None
    for name in names:
        try:
            if snapshots:
                _delete_snapshots_of(name)
            client().request("DELETE", volume_path(name), query={"reference_only": "1"} if reference_only else None)
        except ConvoyError as error:
            typer.echo(f"convoy: {error}", err=True)
            failed = error
    if failed:  # each error is already on its own line; exit with the last one's code
        raise SystemExit(exit_code_for(failed))


def _delete_snapshots_of(volume: str) -> None:
    """`convoy delete --snapshots`: each snapshot goes as `convoy snapshot delete` would delete it (one being
    backed up is refused, and a back-end keeps a snapshot that is a backup, as ebs:// and do:// ones are)."""
    for snapshot in client().request("GET", "/snapshots", query={"volume": volume})["snapshots"]:
        client().request("DELETE", f"/snapshots/{quote(snapshot['name'], safe='')}")


@app.command("list")
@user_errors
def list_volumes(as_json: bool = JsonFlag) -> None:
    """List volumes."""
    commands.list_volumes(as_json)


@app.command()
@user_errors
def inspect(name: str, as_json: bool = JsonFlag) -> None:
    """Show one volume."""
    commands.inspect_volume(name, as_json)


@app.command()
@user_errors
def mount(
    name: str,
    mountpoint: str | None = typer.Option(None, "--mountpoint", "-m", help="also mount it here"),
    as_json: bool = JsonFlag,
) -> None:
    """Mount a volume on this host (it stays mounted until `convoy umount`)."""
    result = client().request("POST", volume_path(name, "/mount"), {"mountpoint": mountpoint})
    print_json(result) if as_json else typer.echo(result["mountpoint"])


@app.command()
@user_errors
def umount(name: str) -> None:
    """Undo `convoy mount`."""
    client().request("POST", volume_path(name, "/umount"), {})


@app.command()
@user_errors
def resize(
    name: str,
    size: str = typer.Argument(..., help="the new size, e.g. 20G: volumes only grow"),
    as_json: bool = JsonFlag,
) -> None:
    """Grow a volume and its file system (online while it is mounted); block back-ends such as image."""
    volume = client().request("POST", volume_path(name, "/resize"), {"size": size})
    print_json(volume) if as_json else typer.echo(f"{volume['name']} {volume['size_human']}")
    if volume.get("warning"):
        typer.echo(f"convoy: {volume['warning']}", err=True)


@app.command()
@user_errors
def info(as_json: bool = JsonFlag) -> None:
    """Show the daemon's settings and back-ends."""
    commands.show_info(as_json)


@app.command()
def daemon(
    drivers: list[str] = typer.Option([], "--drivers", help="back-end (repeatable; the first is the default) [env DRIVER]"),
    driver_opts: list[str] = typer.Option([], "--driver-opts", help="KEY=VALUE (repeatable) [env DRIVER_OPTS]"),
    root_dir: str | None = typer.Option(None, "--root", help="state directory [env CONVOY_ROOT; /var/lib/convoy]"),
    plugin_socket: str | None = typer.Option(None, "--plugin-socket", help="Docker plugin socket [env CONVOY_PLUGIN_SOCKET]"),
    socket: str | None = typer.Option(None, "--socket", help="control socket [env CONVOY_SOCKET]"),
    mount_root: str | None = typer.Option(None, "--mount-root", help="where volumes are mounted [env CONVOY_MOUNT_ROOT]"),
    create_on_docker_mount: bool = typer.Option(False, "--create-on-docker-mount", help="create unknown volumes on mount"),
    ignore_docker_delete: bool = typer.Option(False, "--ignore-docker-delete", help="ignore Docker's volume removes"),
    default_size: str | None = typer.Option(
        None, "--default-size", help="size of volumes created without one [env DEFAULT_SIZE]"
    ),
    s3_endpoint: str | None = typer.Option(None, "--s3-endpoint", help="default S3 endpoint URL [env S3_ENDPOINT]"),
    docker_restore_timeout: float | None = typer.Option(
        None,
        "--docker-restore-timeout",
        help="seconds a docker volume create -o backup= may take [env DOCKER_RESTORE_TIMEOUT; 100]",
    ),
    shared_refresh: float | None = typer.Option(
        None, "--shared-refresh", help="seconds between reads of volumes other hosts recorded [env SHARED_REFRESH; 30]"
    ),
    metrics_addr: str | None = typer.Option(
        None, "--metrics-addr", help="HOST:PORT that also serves /metrics over TCP [env METRICS_ADDR]"
    ),
    log_format: str | None = typer.Option(None, "--log-format", help="text or json (one object a line) [env LOG_FORMAT; text]"),
) -> None:
    """Run the daemon: the Docker volume plugin and the control API."""
    from app import daemon as daemon_module
    from app.settings import load_settings

    try:
        settings = load_settings(
            drivers=drivers or None,
            driver_opts=driver_opts or None,
            root=root_dir,
            plugin_socket=plugin_socket,
            socket=socket or state["socket"],
            mount_root=mount_root,
            create_on_docker_mount=create_on_docker_mount,
            ignore_docker_delete=ignore_docker_delete,
            default_size=default_size,
            s3_endpoint=s3_endpoint,
            docker_restore_timeout=docker_restore_timeout,
            shared_refresh=shared_refresh,
            metrics_addr=metrics_addr,
            log_format=log_format,
        )
    except ConvoyError as error:
        fail(error)
    raise SystemExit(daemon_module.main(settings))


GROUPS = ("snapshot", "backup", "job", "schedule", "store")
_ROOT_OPTIONS_WITH_VALUE = ("--socket",)


def _command_word(argv: list[str]) -> str | None:
    """The first word of `argv` that names a command (root options and their values skipped)."""
    words = iter(argv)
    for word in words:
        if word in _ROOT_OPTIONS_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def assemble(argv: list[str] | None = None) -> typer.Typer:
    """The command tree for `argv`: with it, only the command group it names.

    Typer builds the click command of every group it holds before it parses
    anything, and importing and building all five cost ~8 ms of a command that
    should take 100 ms. `convoy list` needs none of them and `convoy snapshot
    create` only `snapshot`. Without a command word (help, completion) or with
    one convoy does not know, every group is there, so help and "no such
    command" list them all.
    """
    from app.cli import text_params

    text_params.install()
    word = _command_word(argv) if argv is not None and "_CONVOY_COMPLETE" not in os.environ else None
    if word in _top_level_commands():
        return app
    for name in (word,) if word in GROUPS else GROUPS:
        app.add_typer(_group(name), name=name)
    return app


def _top_level_commands() -> set[str]:
    return {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback}


def _group(name: str) -> typer.Typer:
    if name == "schedule":
        from app.cli.schedules import schedule_app

        return schedule_app
    if name == "store":
        from app.cli.stores import store_app

        return store_app
    from app.cli import snapshots

    return {"snapshot": snapshots.snapshot_app, "backup": snapshots.backup_app, "job": snapshots.job_app}[name]


def main() -> None:
    assemble(sys.argv[1:])
    try:
        app()
        code: object = 0
    except SystemExit as done:
        if "app.daemon" in sys.modules:  # the daemon ran here: the interpreter ends it (its threads, its logs)
            raise
        code = done.code
    exit_now(code)


if __name__ == "__main__":
    main()
