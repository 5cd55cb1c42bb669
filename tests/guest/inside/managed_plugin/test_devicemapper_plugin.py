"""The managed plugin, as a user installs it, inside the guest's own Docker engine with DRIVER=devicemapper.

The bundle (config.json + rootfs) is the one the host's `make plugin` built (tests/e2e/test_devicemapper_plugin.py
builds it, then boots the guest for this file alone): the guest has no network, so the plugin is created from
that directory, set and enabled as plugin/plugin.mk's `install-bundle` does. Everything the user meets is real:
Docker's volume calls, the plugin's own dmsetup and thin tools in its rootfs, the pool on loop devices."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.daemon_harness import CONVOY, REPO
from tests.drivers import dm_host
from tests.guest.inside import thinpool
from tests.guest.inside.dm_daemon import assert_ledger_matches_pool

BUNDLE = REPO / "plugin" / "build" / "bundle"
PLUGIN = "convoy-dm:latest"
BUSYBOX = "convoy-test-busybox:latest"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.returncode}\n{result.stderr}"
    return result


def run_in_container(volume: str, script: str) -> str:
    return docker("run", "--rm", "--network", "none", "-v", f"{volume}:/data", BUSYBOX, "sh", "-c", script).stdout


class HostCli:
    """The host's `convoy` CLI on the control socket the plugin shares through its `control` mount."""

    def __init__(self, control: Path):
        self.socket = control / "convoy.sock"

    def __call__(self, *args: str) -> str:
        result = subprocess.run([*CONVOY, "--socket", str(self.socket), *args], cwd=REPO, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"convoy {' '.join(args)}: {result.returncode}\n{result.stderr}"
        return result.stdout.strip()

    def json(self, *args: str):
        return json.loads(self(*args, "--json"))


def enable(attempts: int = 3) -> None:
    """`docker plugin enable`, again if Docker gave up dialling the socket. Docker dials for ~12 s whatever
    --timeout says; the daemon binds in well under a second on real hardware, but Python's start on an
    emulated CPU shared with other work can take longer, and a second try starts with its files cached."""
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        result = docker("plugin", "enable", "--timeout", "600", PLUGIN, check=False)
        print(f"plugin enable, attempt {attempt}: exit {result.returncode} after {time.monotonic() - started:.0f} s")
        if result.returncode == 0:
            return
        if "dial unix" not in result.stderr or attempt == attempts:
            raise AssertionError(f"docker plugin enable {PLUGIN}: {result.stderr}")


@pytest.fixture
def plugin(docker_engine, pool_devices, tmp_path):
    """The plugin created from the host-built bundle and enabled on a pool it makes on `pool_devices`."""
    if not (BUNDLE / "config.json").exists():
        pytest.fail(f"no plugin bundle at {BUNDLE}: the host builds it first (make plugin)")
    state, control = tmp_path / "state", tmp_path / "control"
    state.mkdir()
    control.mkdir()
    started = time.monotonic()
    # Docker packs the ~220 MB rootfs into a compressed layer: minutes on the emulated CPU
    subprocess.run(["bash", "plugin/create.sh", PLUGIN, str(BUNDLE)], cwd=REPO, check=True, timeout=1800)
    print(f"plugin created from the bundle in {time.monotonic() - started:.0f} s")
    options = f"dm.datadev={pool_devices.datadev} dm.metadatadev={pool_devices.metadatadev} " \
              f"dm.thinpoolname={pool_devices.name}"
    docker("plugin", "set", PLUGIN, f"state.source={state}", f"control.source={control}",
           "DRIVER=devicemapper", f"DRIVER_OPTS={options}")
    enable()
    yield state, HostCli(control)
    for container in docker("ps", "-aq").stdout.split():
        docker("rm", "-f", container, check=False)
    docker("plugin", "disable", "-f", PLUGIN, check=False)
    docker("plugin", "rm", "-f", PLUGIN, check=False)


def thin_volume_id(state: Path, pool: str, volume: str) -> int | None:
    return dm_host.volume_device(state, pool, volume)


def test_docker_volumes_on_devicemapper_through_the_managed_plugin(plugin, pool_devices):
    state, convoy = plugin
    pool = pool_devices.name

    docker("volume", "create", "-d", PLUGIN, "-o", "size=256M", "db")
    run_in_container("db", "echo kept by a thin volume > /data/file && sync")
    details = convoy.json("inspect", "db")
    assert details["driver"] == "devicemapper", details
    assert thin_volume_id(state, pool, "db") is not None, "the plugin recorded no thin device for db"

    # Snapshot and back up through the plugin's control socket, then restore into a new volume on this pool.
    snapshot = convoy("snapshot", "create", "db")
    backup = convoy("backup", "create", snapshot, "--dest", "vfs:///var/lib/convoy/backups")
    convoy("create", "db2", "--backup", backup)
    assert run_in_container("db2", "cat /data/file") == "kept by a thin volume\n"
    record = assert_ledger_matches_pool(state, pool_devices)
    kinds = sorted(entry["kind"] for entry in record["devices"].values())
    assert kinds == ["snapshot", "volume", "volume"], record

    # Like a reboot: the plugin stops, every thin device and the pool go away; enabling it brings them back.
    docker("plugin", "disable", "-f", PLUGIN)
    thinpool.remove_active_devices(pool)
    assert pool not in thinpool.dm_names()
    enable()
    assert run_in_container("db", "cat /data/file") == "kept by a thin volume\n"

    # Docker's remove deletes the thin device (its data lives only in this pool), as Convoy did.
    removed_id = thin_volume_id(state, pool, "db2")
    docker("volume", "rm", "db2")
    assert "db2" not in docker("volume", "ls", "-q").stdout.split()
    record = assert_ledger_matches_pool(state, pool_devices)
    assert str(removed_id) not in record["devices"], record
    assert run_in_container("db", "cat /data/file") == "kept by a thin volume\n"
