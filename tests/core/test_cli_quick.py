"""The quick path (app/cli/quick.py): the commands a script calls most, read without typer, answer exactly as
typer's commands do, and anything else is typer's to read."""

import json
import shlex
import subprocess
import sys

import pytest

from app.cli import commands
from app.cli.quick import SHAPES, parse
from tests.daemon_harness import CONVOY, REPO

# typer's reading of the same command line: app.cli.main's own entry, which the quick path falls back to
TYPER_ONLY = [sys.executable, "-c", "import sys; sys.argv[0] = 'convoy'; from app.cli.main import main; main()"]


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False, env=env)


def both(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    return run([*CONVOY, *args], env), run([*TYPER_ONLY, *args], env)


def same(quick: subprocess.CompletedProcess, typer: subprocess.CompletedProcess) -> None:
    assert (quick.returncode, quick.stdout, quick.stderr) == (typer.returncode, typer.stdout, typer.stderr)


@pytest.mark.parametrize(
    ("argv", "run", "kwargs"),
    [
        (["list"], commands.list_volumes, {"as_json": False}),
        (["--socket", "/s", "list", "--json"], commands.list_volumes, {"as_json": True}),
        (["--socket=/s", "inspect", "--json", "v1"], commands.inspect_volume, {"name": "v1", "as_json": True}),
        (["info"], commands.show_info, {"as_json": False}),
        (["snapshot", "create", "--name=s1", "v1"], commands.create_snapshot, {"volume": "v1", "name": "s1", "as_json": False}),
        (["snapshot", "create", "v1"], commands.create_snapshot, {"volume": "v1", "name": None, "as_json": False}),
        (
            ["backup", "create", "s1", "--s3-endpoint", "http://h:9000", "--dest=s3://b@r/p", "--json"],
            commands.create_backup,
            {"snapshot": "s1", "dest": "s3://b@r/p", "s3_endpoint": "http://h:9000", "name": None, "as_json": True},
        ),
        (["inspect", ""], commands.inspect_volume, {"name": "", "as_json": False}),  # typer passes it on too
        (["snapshot", "list"], commands.list_snapshots, {"volume": None, "as_json": False}),
        (["snapshot", "list", "--json", "v1"], commands.list_snapshots, {"volume": "v1", "as_json": True}),
        (
            ["backup", "list", "--volume-name=v1", "vfs:///b"],
            commands.list_backups,
            {"dest": "vfs:///b", "volume_name": "v1", "s3_endpoint": None, "as_json": False},
        ),
        (["job", "list", "--json"], commands.list_jobs, {"as_json": True}),
    ],
)
def test_the_command_lines_it_reads(argv, run, kwargs):
    call = parse(argv)
    assert call is not None and call.run is run and call.kwargs == kwargs
    assert call.socket == ("/s" if "/s" in " ".join(argv) else None)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["list", "--help"],
        ["list", "-h"],
        ["--version"],
        ["--json", "list"],
        ["inspect"],
        ["inspect", "a", "b"],
        ["list", "extra"],
        ["list", "--jsn"],
        ["list", "--json", "--json"],
        ["list", "--json=1"],
        ["inspect", "--", "-x"],
        ["inspect", "-x"],
        ["snapshot", "create", "v", "--name"],
        ["snapshot", "create", "v", "--name", "-x"],
        ["snapshot", "create", "v", "--name", "a", "--name", "b"],
        ["snapshot", "list", "v1", "v2"],
        ["snapshot", "list", "--name", "x"],
        ["snapshot"],
        ["backup", "create", "s1"],
        ["backup", "create", "s1", "--dest"],
        ["backup", "list"],
        ["backup", "list", "vfs:///b", "--volume-name"],
        ["backup", "inspect", "vfs:///b?backup=b&volume=v"],
        ["job", "list", "x"],
        ["job", "inspect", "x"],
        ["--socket"],
        ["--socket", "-x", "list"],
        ["list", "--socket", "/s"],
        ["create", "v"],
        ["lisst"],
    ],
)
def test_everything_else_is_left_to_typer(argv):
    assert parse(argv) is None


def test_shell_completion_is_left_to_typer(monkeypatch):
    monkeypatch.setenv("_CONVOY_COMPLETE", "bash_complete")
    assert parse(["list"]) is None


@pytest.mark.needs_root
def test_it_answers_as_typer_does_and_without_importing_typer(daemon, tmp_path):
    daemon.cli("create", "web", "--size", "2G", check=True)
    daemon.cli("create", "db", check=True)
    sock = ["--socket", str(daemon.socket)]
    for args in (
        ["list"],
        ["list", "--json"],
        ["inspect", "web"],
        ["inspect", "--json", "web"],
        ["info"],
        ["info", "--json"],
        ["inspect", "nope"],
        ["inspect", ""],
        ["snapshot", "create", "nope"],
        ["snapshot", "create", "web", "--name", "a/b"],
        ["backup", "create", "no-such-snapshot", "--dest", f"vfs://{tmp_path}/store"],
        ["backup", "list", "nowhere://x"],
        ["snapshot", "list", "nope"],
        ["job", "list"],
        ["backup", "list", f"vfs://{tmp_path}/empty-store"],
    ):
        quick, typer = both(*sock, *args)
        same(quick, typer)
        assert quick.stdout or quick.returncode != 0, args

    # what creates something: the same answer, each with its own name; a name taken, the same conflict
    made = [
        run([*command, *sock, "snapshot", "create", "web", "--name", name])
        for command, name in ((CONVOY, "by-quick"), (TYPER_ONLY, "by-typer"))
    ]
    assert [(m.returncode, m.stdout) for m in made] == [(0, "by-quick\n"), (0, "by-typer\n")], made
    quick, typer = both(*sock, "snapshot", "create", "web", "--name", "by-typer")
    same(quick, typer)
    assert quick.returncode == 4 and "already exists" in quick.stderr
    store = f"vfs://{tmp_path}/store"
    made = [
        run([*command, *sock, "backup", "create", snap, "--dest", store, "--name", f"b-{snap}"])
        for command, snap in ((CONVOY, "by-quick"), (TYPER_ONLY, "by-typer"))
    ]
    assert [m.returncode for m in made] == [0, 0], [m.stderr for m in made]
    assert [m.stdout.strip() for m in made] == [f"{store}?backup=b-by-quick&volume=web", f"{store}?backup=b-by-typer&volume=web"]
    for done in made:
        assert json.loads(daemon.cli("backup", "inspect", done.stdout.strip(), "--json", check=True).stdout)["volume"] == "web"

    # the lists, with what was made above in them (and an unreadable backup, reported after the table)
    (tmp_path / "store" / "convoy-store" / "volumes" / "web" / "backups" / "b-torn.json.zst").write_bytes(b"{")
    for args in (
        ["snapshot", "list"],
        ["snapshot", "list", "web", "--json"],
        ["backup", "list", store],
        ["backup", "list", store, "--volume-name", "web", "--json"],
        ["job", "list"],
        ["job", "list", "--json"],
    ):
        quick, typer = both(*sock, *args)
        same(quick, typer)
        assert quick.returncode == 0 and quick.stdout, args
    assert "by-quick" in both(*sock, "snapshot", "list")[0].stdout
    listed = both(*sock, "backup", "list", store)[0]
    assert "b-by-typer" in listed.stdout and "UNREADABLE" in listed.stdout and "b-torn" in listed.stderr

    # each shape it reads, read without importing typer
    for args in (
        ["list"],
        ["inspect", "web"],
        ["info"],
        ["snapshot", "create", "web"],
        ["backup", "create", "by-quick", "--dest", store],
        ["snapshot", "list"],
        ["backup", "list", store],
        ["job", "list"],
    ):
        traced = run([sys.executable, "-X", "importtime", "-m", "app", *sock, *args])
        assert traced.returncode == 0, traced.stderr
        imported = {line.split("|")[-1].strip() for line in traced.stderr.splitlines() if line.startswith("import time:")}
        assert "app.cli.quick" in imported and not {m for m in imported if m.split(".")[0] in ("typer", "click")}, args


@pytest.mark.needs_root
def test_the_socket_comes_from_the_option_then_the_environment_then_the_default(daemon):
    import os

    env = {k: v for k, v in os.environ.items() if k != "CONVOY_SOCKET"}
    for extra, args in (
        ({"CONVOY_SOCKET": str(daemon.socket)}, ["list"]),
        ({"CONVOY_SOCKET": "/nonexistent/convoy.sock"}, ["--socket", str(daemon.socket), "list"]),
        ({"CONVOY_SOCKET": "/nonexistent/convoy.sock"}, ["info"]),
        ({"CONVOY_SOCKET": ""}, ["--socket", f"{daemon.socket}.missing", "info"]),
        ({"CONVOY_SOCKET": ""}, ["list"]),
    ):
        quick, typer = both(*args, env={**env, **extra})
        same(quick, typer)
    assert both("list", env={**env, "CONVOY_SOCKET": str(daemon.socket)})[0].returncode == 0
    assert "/nonexistent/convoy.sock" in both("info", env={**env, "CONVOY_SOCKET": "/nonexistent/convoy.sock"})[0].stderr


@pytest.mark.parametrize("words", list(SHAPES))
def test_each_shape_has_the_parameters_of_its_typer_command(words):
    """A parameter added to (or renamed in) a typer command without its shape here would be read wrongly."""
    import typer.main

    from app.cli.main import assemble

    command = typer.main.get_command(assemble(list(words)))
    for word in words:
        command = command.commands[word]  # type: ignore[attr-defined]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    options = {p.opts[0]: p for p in command.params if p.param_type_name == "option" and p.opts[0] != "--help"}
    shape = SHAPES[words]
    assert [(p.name, p.required) for p in arguments] == [(a, True) for a in shape.arguments] + [
        (a, False) for a in shape.optional
    ]
    assert sorted(options) == sorted([*shape.options, "--json"])
    assert options["--json"].is_flag and not any(options[o].is_flag or options[o].multiple for o in shape.options)
    assert sorted(o for o in shape.options if options[o].required) == sorted(shape.required)
    assert all(p.envvar is None for p in options.values())  # an option the environment sets is typer's to read


@pytest.mark.needs_root
def test_a_reader_that_stops_early_ends_both_alike_without_a_traceback(daemon):
    """`convoy list --json | head -c 100` on a list longer than the pipe holds: the write fails mid-way."""
    for i in range(250):  # ~100 KiB of JSON, more than a pipe's 64 KiB
        daemon.docker_ok("Create", {"Name": f"volume-with-a-long-name-{i:04d}"})
    results = []
    for command in (CONVOY, TYPER_ONLY):
        line = " ".join(shlex.quote(w) for w in [*command, "--socket", str(daemon.socket), "list", "--json"])
        done = subprocess.run(["bash", "-c", f"{line} | head -c 100 >/dev/null; echo ${{PIPESTATUS[0]}}"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
        results.append((done.stdout.strip(), done.stderr))
    assert results[0] == results[1] == ("1", ""), results
