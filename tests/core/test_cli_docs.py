"""The CLI reference (docs/cli.md) is what the CLI says, and `convoy --version` names the installed version."""

import subprocess
import sys
import tomllib
from pathlib import Path

from app.cli.docs import REGENERATE
from tests.daemon_harness import REPO

CONVOY_SCRIPT = Path(sys.executable).parent / "convoy"


def test_docs_cli_md_is_what_the_cli_generates():
    generated = subprocess.run(
        [sys.executable, "-m", "app.cli.docs"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert (REPO / "docs" / "cli.md").read_text() == generated, f"docs/cli.md is stale: regenerate it with `{REGENERATE}`"


def test_the_reference_covers_every_command():
    page = (REPO / "docs" / "cli.md").read_text()
    for command in ("convoy create", "convoy backup create", "convoy job inspect", "convoy daemon"):
        assert f"## {command}\n" in page
    assert "`--install-completion`" in page and "`--version`" in page


def test_version_is_the_package_version():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = subprocess.run([str(CONVOY_SCRIPT), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, f"convoy {version}\n"), done.stderr
