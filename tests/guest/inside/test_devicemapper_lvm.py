"""The devicemapper back-end on an existing LVM thin pool (dm.lvm_thinpool=VG/POOL), in the guest's kernel:
thin LVs as volumes, lvcreate snapshots, incremental backups through the pool's metadata snapshot."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.daemon_harness import cli_json
from tests.drivers import dm_host

pytestmark = pytest.mark.needs_root
MIB = 1 << 20


def lvs(vg: str) -> set[str]:
    return set(dm_host.sh("lvm", "lvs", "--noheadings", "-o", "lv_name", vg).split())


@pytest.fixture
def lvm_pool(tmp_path):
    """A volume group on a loop file with a 2 GiB thin pool of 2 MiB chunks: VG/pool."""
    image = tmp_path / "pv.img"
    subprocess.run(["truncate", "-s", "3G", str(image)], check=True)
    loop = dm_host.sh("losetup", "--find", "--show", str(image)).strip()
    vg = f"convoytest{os.getpid()}"
    dm_host.sh("lvm", "pvcreate", "-y", loop)
    dm_host.sh("lvm", "vgcreate", vg, loop)
    dm_host.sh("lvm", "lvcreate", "--type", "thin-pool", "-L", "2G", "-c", "2M", "-n", "pool", vg)
    yield vg
    for mount in reversed([line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]):
        if f"/{vg}-" in mount:
            subprocess.run(["umount", "-l", mount], check=False)
    subprocess.run(["lvm", "vgremove", "-f", vg], check=False)
    subprocess.run(["lvm", "pvremove", "-y", loop], check=False)
    subprocess.run(["losetup", "-d", loop], check=False)


@pytest.fixture
def lvm_daemon(make_daemon, lvm_pool):
    daemon = make_daemon("--drivers", "devicemapper", "--driver-opts", f"dm.lvm_thinpool={lvm_pool}/pool")
    daemon.wait_ready(120)
    yield daemon
    daemon.stop()
    daemon.cleanup_mounts()


def device_sha256(vg: str, lv: str) -> str:
    dm_host.sh("lvm", "lvchange", "-ay", "-K", f"{vg}/{lv}")
    try:
        with open(f"/dev/mapper/{vg}-{lv}", "rb") as device:
            return hashlib.sha256(device.read()).hexdigest()
    finally:
        dm_host.sh("lvm", "lvchange", "-an", f"{vg}/{lv}")


def test_lvm_volumes_snapshots_and_incremental_backups(lvm_daemon, lvm_pool, tmp_path):
    daemon, vg = lvm_daemon, lvm_pool
    store = f"vfs://{tmp_path / 'store'}"
    daemon.cli("create", "lv1", "--size", "128M", check=True)
    assert "convoy_lv1" in lvs(vg)
    mountpoint = daemon.docker_ok("Mount", {"Name": "lv1", "ID": "c1"})["Mountpoint"]
    with open(os.path.join(mountpoint, "big"), "wb") as f:
        f.write(os.urandom(8 * MIB))
    daemon.cli("snapshot", "create", "lv1", "--name", "mounted", check=True)  # lvcreate -s of a mounted origin
    daemon.docker_ok("Unmount", {"Name": "lv1", "ID": "c1"})
    first = daemon.cli("snapshot", "create", "lv1", check=True).stdout.strip()
    url1 = daemon.cli("backup", "create", first, "--dest", store, check=True).stdout.strip()
    assert cli_json(daemon, "backup", "inspect", url1)["stats"]["read_bytes"] < 64 * MIB, "only the mapped chunks"

    # three 4 KiB writes in three 2 MiB chunks of the pool, straight onto the thin LV
    dm_host.sh("lvm", "lvchange", "-ay", f"{vg}/convoy_lv1")
    fd = os.open(f"/dev/mapper/{vg}-convoy_lv1", os.O_WRONLY)
    try:
        for offset in (40 * MIB, 70 * MIB + 4096, 101 * MIB):
            os.pwrite(fd, os.urandom(4096), offset)
        os.fsync(fd)
    finally:
        os.close(fd)
        dm_host.sh("lvm", "lvchange", "-an", f"{vg}/convoy_lv1")
    second = daemon.cli("snapshot", "create", "lv1", check=True).stdout.strip()
    url2 = daemon.cli("backup", "create", second, "--dest", store, check=True).stdout.strip()
    stats = cli_json(daemon, "backup", "inspect", url2)["stats"]
    assert stats["read_bytes"] == 3 * 2 * MIB, f"the second backup read more than thin_delta's 3 chunks: {stats}"

    daemon.cli("create", "lv2", "--backup", url2, check=True)
    assert device_sha256(vg, "convoy_lv2") == device_sha256(vg, "convoy_lv1")

    for snapshot in ("mounted", first, second):
        daemon.cli("snapshot", "delete", snapshot, check=True)
    daemon.cli("delete", "-r", "lv2", check=True)
    assert "convoy_lv2" in lvs(vg), "delete -r keeps the thin LV"
    daemon.cli("create", "lv2", check=True)  # takes it back
    daemon.docker_ok("Remove", {"Name": "lv1"})
    assert "convoy_lv1" not in lvs(vg), "Docker's remove deletes the thin LV (the data lives on this host)"
    assert not any("_snap_" in lv for lv in lvs(vg))
