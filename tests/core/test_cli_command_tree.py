"""`convoy` loads only the command group a command needs (issue 12: a CLI command in 0.1 s),
and help, errors and the groups behave as if every group were always there."""

import subprocess
import sys

import pytest

from tests.daemon_harness import CONVOY, REPO

GROUPS = ["snapshot", "backup", "job", "schedule", "store"]


def convoy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CONVOY, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def modules_loaded_for(*argv: str) -> set[str]:
    """The app.cli modules a command's tree needs, as main() builds it for this argv."""
    code = (
        "import sys; from app.cli.main import assemble; "
        f"assemble({list(argv)!r}); print(' '.join(m for m in sys.modules if m.startswith('app.cli.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize(
    ("argv", "loaded", "not_loaded"),
    [
        (["list"], set(), {"app.cli.snapshots", "app.cli.schedules", "app.cli.stores"}),
        (["--socket", "/run/x.sock", "inspect", "v1"], set(), {"app.cli.snapshots", "app.cli.stores"}),
        (["snapshot", "create", "v1"], {"app.cli.snapshots"}, {"app.cli.schedules", "app.cli.stores"}),
        (["--socket", "store", "store", "init"], {"app.cli.stores"}, {"app.cli.snapshots"}),  # a socket named "store"
        (["--help"], {"app.cli.snapshots", "app.cli.schedules", "app.cli.stores"}, set()),
        (["lisst"], {"app.cli.snapshots", "app.cli.schedules", "app.cli.stores"}, set()),
    ],
)
def test_a_command_loads_only_its_group(argv, loaded, not_loaded):
    modules = modules_loaded_for(*argv)
    assert loaded <= modules and not (not_loaded & modules), modules


def test_help_lists_every_group_and_every_group_has_its_help():
    top = convoy("--help")
    assert top.returncode == 0
    for group in GROUPS:
        assert f"│ {group} " in top.stdout, top.stdout
        sub = convoy(group, "--help")
        assert sub.returncode == 0 and "Commands" in sub.stdout, sub.stderr


def test_a_mistyped_command_is_named_with_a_suggestion():
    typo = convoy("snapshto", "list")
    assert typo.returncode == 2 and "No such command 'snapshto'" in typo.stderr and "snapshot" in typo.stderr
    typo = convoy("snapshot", "craete", "v1")
    assert typo.returncode == 2 and "No such command 'craete'" in typo.stderr and "create" in typo.stderr
