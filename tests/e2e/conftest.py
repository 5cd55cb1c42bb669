"""Session fixture: install Debian's Docker engine, start a private dockerd,
build and install the Convoy managed plugin with `make install`, and stop the
engine at the end. Skips (with the reason) only when not root; CI runs as root.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.engine import Engine

E2E_ROOT = Path(os.environ.get("CONVOY_E2E_ROOT", "/var/lib/convoy-e2e"))


@pytest.fixture(scope="session")
def engine():
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests need root: they install Docker and run a real dockerd")
    e = Engine(E2E_ROOT)
    # One session at a time per engine root: a second one waits here.
    E2E_ROOT.mkdir(parents=True, exist_ok=True)
    lock = open(E2E_ROOT / ".session.lock", "w")  # noqa: SIM115 - held (and locked) for the whole session
    fcntl.flock(lock, fcntl.LOCK_EX)
    e.run("bash", "ci/install-deps.sh", timeout=900)
    # A run interrupted before its teardown may have left an engine running.
    e.stop()
    e.unmount_leftovers()
    log = E2E_ROOT / "dockerd.log"
    if log.exists():  # this session's log starts empty; the previous one is kept beside it
        log.replace(E2E_ROOT / "dockerd.log.1")
    e.start()
    try:
        e.reset()
        e.run("bash", "ci/make-busybox-image.sh", timeout=300)
        e.install_plugin()
        yield e
    finally:
        e.docker("swarm", "leave", "--force", check=False)
        ids = e.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            e.docker("rm", "-f", *ids, check=False)
        e.stop()
        e.unmount_leftovers()
        lock.close()


SECOND_BRIDGE = ("convoy-e2e-b0", "10.231.254.1/24")


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


@pytest.fixture
def second_engine(engine):
    """A second Docker engine on this machine, a second host: its own data-root, exec-root and socket, its own
    bridge (`--bridge none` would make dockerd delete docker0, the first engine's), and the plugin installed from
    the bundle the session's engine built."""
    bridge, address = SECOND_BRIDGE
    other = Engine(E2E_ROOT.with_name(E2E_ROOT.name + "-b"), dockerd_args=f"--bridge {bridge} --iptables=false")
    other.stop()
    other.unmount_leftovers()
    ip("link", "del", bridge, check=False)
    ip("link", "add", bridge, "type", "bridge")
    ip("addr", "add", address, "dev", bridge)
    ip("link", "set", bridge, "up")
    other.start()
    try:
        other.reset()
        other.run("bash", "ci/make-busybox-image.sh", timeout=300)
        other.install_plugin(build=False)
        yield other
    finally:
        other.docker("swarm", "leave", "--force", check=False)
        ids = other.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            other.docker("rm", "-f", *ids, check=False)
        other.stop()
        other.unmount_leftovers()
        ip("link", "del", bridge, check=False)


@pytest.fixture
def vol(engine):
    """A unique volume name for one test (names must not clash across tests)."""
    return lambda label="v": f"e2e-{label}-{uuid.uuid4().hex[:6]}"


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: drives a real dockerd and the installed plugin through the docker CLI")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed e2e test, show the engine's and the plugin's recent log lines."""
    report = yield
    if report.failed and call.when in ("call", "setup"):
        log = E2E_ROOT / "dockerd.log"
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        interesting = [line for line in lines if "level=info" not in line or "plugin=" in line]
        report.sections.append(("dockerd and plugin log (last 60 lines)", "\n".join(interesting[-60:])))
    return report
