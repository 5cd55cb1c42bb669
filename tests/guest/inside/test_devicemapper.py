"""The devicemapper back-end in a real kernel: snapshots of a volume being written, incremental backups that
read only thin_delta's chunks, kill -9 between every pair of dmsetup steps, Convoy 0.5.2's deltablock backups
restored into a thin volume."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from app.storage.devicemapper import FAULT_FILE_ENV
from tests.convoy_dm_fixture import assert_restored, copied_store
from tests.daemon_harness import cli_json
from tests.drivers import dm_host
from tests.drivers.backends import loop_devices_of
from tests.guest.inside import dm_daemon
from tests.guest.inside.dm_daemon import assert_ledger_matches_pool

pytestmark = pytest.mark.needs_root
MIB = 1 << 20


@pytest.fixture
def dm(make_daemon, pool_devices):
    daemon = make_daemon(*dm_daemon.daemon_args(pool_devices))
    daemon.wait_ready(120)
    yield daemon
    daemon.stop()
    daemon.cleanup_mounts()


def mount(daemon, name: str, ref: str = "c1") -> str:
    return daemon.docker_ok("Mount", {"Name": name, "ID": ref})["Mountpoint"]


def unmount(daemon, name: str, ref: str = "c1") -> None:
    daemon.docker_ok("Unmount", {"Name": name, "ID": ref})


def test_snapshots_of_a_volume_being_written_hold_a_clean_file_system(dm, pool_devices):
    dm.cli("create", "busy", "--size", "256M", check=True)
    mountpoint = mount(dm, "busy")
    writer = subprocess.Popen(
        [
            "sh",
            "-c",
            f"i=0; while :; do dd if=/dev/urandom of={mountpoint}/f$((i % 20)) bs=64k count=8 conv=fsync "
            "status=none; i=$((i+1)); done",
        ]
    )
    try:
        time.sleep(2)
        names = [dm.cli("snapshot", "create", "busy", check=True).stdout.strip() for _ in range(3)]
    finally:
        writer.kill()
        writer.wait()
    size = cli_json(dm, "inspect", "busy")["size"]
    for number, name in enumerate(names):
        device_id = dm_daemon.snapshot_id(dm.root, pool_devices.name, "busy", name)
        device = dm_daemon.activated(pool_devices.name, device_id, size, f"{pool_devices.name}-check{number}")
        try:
            check = dm_daemon.fsck_clean(device)
            assert check.returncode == 0, f"snapshot {name}: e2fsck -n says\n{check.stdout}{check.stderr}"
        finally:
            dm_daemon.deactivate(f"{pool_devices.name}-check{number}")
    unmount(dm, "busy")


def test_the_second_backup_reads_only_the_changed_2mib_chunks(dm, pool_devices, tmp_path):
    store = f"vfs://{tmp_path / 'store'}"
    dm.cli("create", "inc", "--size", "128M", check=True)
    mountpoint = mount(dm, "inc")
    with open(os.path.join(mountpoint, "data"), "wb") as f:
        f.write(os.urandom(8 * MIB))
    unmount(dm, "inc")
    first = dm.cli("snapshot", "create", "inc", check=True).stdout.strip()
    url1 = dm.cli("backup", "create", first, "--dest", store, check=True).stdout.strip()
    stats1 = cli_json(dm, "backup", "inspect", url1)["stats"]
    assert stats1["read_bytes"] < 48 * MIB, f"the first backup read more than the mapped ranges: {stats1}"

    # three 4 KiB writes in three different 2 MiB chunks, straight onto the thin device
    details = cli_json(dm, "inspect", "inc")
    size = details["size"]
    device_id = dm_daemon.ledger(dm.root, pool_devices.name)
    volume_id = next(int(k) for k, e in device_id["devices"].items() if e["volume"] == "inc" and e["kind"] == "volume")
    device = dm_daemon.activated(pool_devices.name, volume_id, size, f"{pool_devices.name}-raw", read_only=False)
    try:
        fd = os.open(device, os.O_WRONLY)
        try:
            for offset in (40 * MIB, 70 * MIB + 4096, 100 * MIB + MIB):
                os.pwrite(fd, os.urandom(4096), offset)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        dm_daemon.deactivate(f"{pool_devices.name}-raw")
    second = dm.cli("snapshot", "create", "inc", check=True).stdout.strip()
    url2 = dm.cli("backup", "create", second, "--dest", store, check=True).stdout.strip()
    stats2 = cli_json(dm, "backup", "inspect", url2)["stats"]
    assert stats2["read_bytes"] == 3 * 2 * MIB, f"the second backup read more than the 3 changed chunks: {stats2}"

    # and a restore of the second is the volume as it is now, byte for byte
    dm.cli("create", "back", "--backup", url2, check=True)
    sums = []
    for name in ("inc", "back"):
        details = cli_json(dm, "inspect", name)
        ids = dm_daemon.ledger(dm.root, pool_devices.name)["devices"]
        vid = next(int(k) for k, e in ids.items() if e["volume"] == name and e["kind"] == "volume")
        device = dm_daemon.activated(pool_devices.name, vid, details["size"], f"{pool_devices.name}-sum")
        try:
            with open(device, "rb") as f:
                sums.append(hashlib.sha256(f.read()).hexdigest())
        finally:
            dm_daemon.deactivate(f"{pool_devices.name}-sum")
    assert sums[0] == sums[1]


@pytest.fixture
def dm_armed(make_daemon, pool_devices, tmp_path):
    """A daemon on the pool that kills itself after the step written to `daemon.fault_file` (operation:step)."""
    fault_file = tmp_path / "fault"
    daemon = make_daemon(*dm_daemon.daemon_args(pool_devices), env={FAULT_FILE_ENV: str(fault_file)})
    daemon.fault_file = fault_file
    daemon.wait_ready(120)
    yield daemon
    daemon.stop()
    daemon.cleanup_mounts()


def _crash_at(daemon, operation: str, step: int, action) -> None:
    """Arm the fault, run `action` (the daemon kills itself in it), start the daemon again."""
    daemon.fault_file.write_text(f"{operation}:{step}")
    action()
    assert daemon.process.wait(60) == -9, f"the daemon did not die after {operation} step {step}"
    assert not daemon.fault_file.exists()
    daemon.start()
    daemon.wait_ready(120)


def _still_writable(mountpoint: str) -> None:
    """Not suspended, not frozen: a write and a sync finish."""
    subprocess.run(["sh", "-c", f"echo after > {mountpoint}/after && sync {mountpoint}/after"], timeout=30, check=True)


def test_kill_9_between_the_steps_of_a_create(dm_armed, pool_devices):
    dm = dm_armed
    for step in (1, 2, 3):
        name = f"new{step}"
        _crash_at(dm, "create", step, lambda name=name: dm.cli("create", name, "--size", "64M"))
        assert_ledger_matches_pool(dm.root, pool_devices)
        dm.cli("create", name, "--size", "64M", check=True)  # Docker's retry
        mountpoint = mount(dm, name)
        _still_writable(mountpoint)
        unmount(dm, name)
        assert_ledger_matches_pool(dm.root, pool_devices)


def test_kill_9_between_the_steps_of_a_snapshot_of_a_mounted_volume(dm_armed, pool_devices):
    dm = dm_armed
    dm.cli("create", "origin", "--size", "64M", check=True)
    mountpoint = mount(dm, "origin")
    for step in (1, 2, 3, 4):
        with open(os.path.join(mountpoint, "step"), "w") as f:
            f.write(str(step))
        _crash_at(dm, "snapshot", step, lambda step=step: dm.cli("snapshot", "create", "origin", "--name", f"s{step}"))
        _still_writable(mountpoint)  # resumed and thawed by the start-up
        assert_ledger_matches_pool(dm.root, pool_devices)
        dm.cli("snapshot", "create", "origin", "--name", f"s{step}", check=True)
        assert_ledger_matches_pool(dm.root, pool_devices)
    unmount(dm, "origin")


def test_kill_9_between_the_steps_of_a_delete(dm_armed, pool_devices):
    dm = dm_armed
    for step in (1, 2, 3):
        name = f"doomed{step}"
        dm.cli("create", name, "--size", "64M", check=True)
        _crash_at(dm, "delete", step, lambda name=name: dm.cli("delete", name))
        assert_ledger_matches_pool(dm.root, pool_devices)
        dm.cli("delete", name, check=True)  # asked again: it goes, whatever the crash left
        assert dm.cli("inspect", name).returncode != 0
        assert_ledger_matches_pool(dm.root, pool_devices)


def test_docker_remove_deletes_the_thin_device_and_delete_r_keeps_it(dm, pool_devices):
    for name in ("removed", "kept"):
        dm.cli("create", name, "--size", "64M", check=True)
    dm.docker_ok("Remove", {"Name": "removed"})
    dm.cli("delete", "-r", "kept", check=True)
    record = assert_ledger_matches_pool(dm.root, pool_devices)
    volumes = {e["volume"]: e["state"] for e in record["devices"].values()}
    assert volumes == {"kept": "kept"}
    dm.cli("create", "kept", check=True)  # takes its thin device back
    assert {e["volume"]: e["state"] for e in dm_daemon.ledger(dm.root, pool_devices.name)["devices"].values()} == {
        "kept": "ready"
    }


def test_a_convoy_deltablock_backup_restores_into_a_thin_volume(dm, tmp_path):
    expected = copied_store(tmp_path / "convoy-store")
    for which in ("backup1", "backup2"):
        url = expected[f"{which}_url_printed"]
        dm.cli("create", which, "--backup", url, check=True)
        mountpoint = Path(mount(dm, which))
        try:
            assert_restored(mountpoint, expected, which)
        finally:
            unmount(dm, which)


def test_a_nearly_full_pool_refuses_new_volumes_with_the_numbers(make_daemon, tmp_path):
    """A 128 MiB pool (64 blocks of 2 MiB): past dm.autoextend=40% a warning, past 50% used creates are refused."""
    data, metadata = tmp_path / "small-data.img", tmp_path / "small-metadata.img"
    subprocess.run(["truncate", "-s", "128M", str(data)], check=True)
    subprocess.run(["truncate", "-s", "16M", str(metadata)], check=True)
    pool = f"convoy-small-{os.getpid()}"
    options = {
        "dm.datadev": data,
        "dm.metadatadev": metadata,
        "dm.thinpoolname": pool,
        "dm.min_free_space": "50",
        "dm.autoextend": "40",
    }
    daemon = make_daemon("--drivers", "devicemapper", *[a for k, v in options.items() for a in ("--driver-opts", f"{k}={v}")])
    try:
        daemon.wait_ready(120)
        daemon.cli("create", "first", "--size", "120M", check=True)
        mountpoint = mount(daemon, "first")
        with open(os.path.join(mountpoint, "fill"), "wb") as f:
            f.write(os.urandom(72 * MIB))
            os.fsync(f.fileno())
        refused = daemon.cli("create", "second", "--size", "64M")
        assert refused.returncode != 0
        said = refused.stderr
        assert "is nearly full (data" in said and "refused above 50% (dm.min_free_space=50%)" in said, said
        assert "needs extending" in daemon.log_text() and "dm.autoextend=40%" in daemon.log_text()
        unmount(daemon, "first")
    finally:
        daemon.stop()
        daemon.cleanup_mounts()
        dm_host.remove_pool(pool)
        for device in loop_devices_of(tmp_path):
            subprocess.run(["losetup", "-d", device], check=False)
