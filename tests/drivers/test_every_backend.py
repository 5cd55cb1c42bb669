"""The suite every back-end must pass, through a real daemon's sockets and CLI.

Parametrised over `tests/drivers/backends.BACKENDS` (the way restic runs one
suite against every storage backend): a new back-end is done when it passes
all of this unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.backup.treecheck import describe, make_sample_tree
from tests.daemon_harness import cli_json, mounted_points, wait_until

pytestmark = pytest.mark.needs_root




def mount(daemon, name: str, ref: str) -> str:
    return daemon.docker_ok("Mount", {"Name": name, "ID": ref})["Mountpoint"]


def unmount(daemon, name: str, ref: str) -> None:
    daemon.docker_ok("Unmount", {"Name": name, "ID": ref})


def times_mounted(path: str) -> int:
    with open("/proc/self/mountinfo") as info:
        return sum(1 for line in info if line.split(" ")[4] == path)


def test_create_mount_twice_unmount_and_remount_keeps_the_data(host):
    daemon = host.daemon
    daemon.docker_ok("Create", {"Name": "v1", "Opts": {"size": "64M"}})
    daemon.docker_ok("Create", {"Name": "v1", "Opts": {"size": "64M"}})  # Docker retries: idempotent
    first = mount(daemon, "v1", "c1")
    assert mount(daemon, "v1", "c2") == first
    assert times_mounted(first) == 1
    with open(os.path.join(first, "hello"), "w") as f:
        f.write("persisted")
    unmount(daemon, "v1", "c1")
    assert first in mounted_points(), "a second container still uses it"
    unmount(daemon, "v1", "c2")
    assert first not in mounted_points()
    assert host.attached_devices() == {}, "an unmounted block volume is detached"
    again = mount(daemon, "v1", "c3")
    assert Path(again, "hello").read_text() == "persisted"
    unmount(daemon, "v1", "c3")


def test_existing_storage_is_adopted_with_its_data(host):
    host.plant("old", {"kept.txt": b"made before convoy"})
    host.daemon.docker_ok("Create", {"Name": "old"})  # on a cloud back-end, the planted volume is listed already
    mountpoint = mount(host.daemon, "old", "c1")
    assert Path(mountpoint, "kept.txt").read_bytes() == b"made before convoy"
    unmount(host.daemon, "old", "c1")
    host.daemon.cli("delete", "old", check=True)


def test_kill_9_and_reboot_leave_each_mount_and_attachment_once(host):
    daemon = host.daemon
    for name in ("held", "idle"):
        daemon.cli("create", name, "--size", "64M", check=True)
    mount(daemon, "idle", "c1")
    unmount(daemon, "idle", "c1")
    mountpoint = mount(daemon, "held", "c1")
    with open(os.path.join(mountpoint, "f"), "w") as f:
        f.write("before the crash")
    for _ in range(3):
        daemon.kill9()
        daemon.start()
        assert daemon.docker_ok("Get", {"Name": "held"})["Volume"]["Mountpoint"] == mountpoint
        daemon.wait_ready()
        assert times_mounted(mountpoint) == 1
        assert len(host.attached_devices()) == (1 if host.backend.snapshots == "block" else 0)
    # a reboot: the kernel forgets every mount (and local loop device); the references survive
    daemon.kill9()
    host.reboot(mountpoint)
    daemon.start()
    assert wait_until(lambda: mountpoint in mounted_points()), "the start-up remounts what references still hold"
    assert Path(mountpoint, "f").read_text() == "before the crash"
    unmount(daemon, "held", "c1")
    assert host.attached_devices() == {}


def test_snapshot_backup_restore_and_incremental(host, tmp_path):
    daemon = host.daemon
    store = f"vfs://{tmp_path / 'store'}"
    daemon.cli("create", "data", "--size", "128M", check=True)
    mountpoint = mount(daemon, "data", "c1")
    make_sample_tree(Path(mountpoint) / "tree")
    first = daemon.cli("snapshot", "create", "data", check=True).stdout.strip()
    url1 = daemon.cli("backup", "create", first, "--dest", store, check=True).stdout.strip()
    expected_first = describe(mountpoint)
    with open(os.path.join(mountpoint, "tree", "new-file"), "wb") as f:
        f.write(os.urandom(1 << 20))
    second = daemon.cli("snapshot", "create", "data", check=True).stdout.strip()
    url2 = daemon.cli("backup", "create", second, "--dest", store, check=True).stdout.strip()
    expected_second = describe(mountpoint)
    unmount(daemon, "data", "c1")

    backup = cli_json(daemon, "backup", "inspect", url2)
    assert backup["source"] == ("image" if host.backend.snapshots == "block" else "tree")
    assert backup["base_backup"] == cli_json(daemon, "backup", "inspect", url1)["name"]
    stats = backup["stats"]
    assert stats["new_bytes"] < stats["data_bytes"] / 2, f"the second backup stored everything again: {stats}"
    # reflinked images and EBS (its direct APIs' ListChangedBlocks) tell which ranges changed; a plain copy and DO do not
    if host.backend.reads_only_changes:
        assert stats["read_bytes"] < stats["data_bytes"] / 2, f"the second backup read everything again: {stats}"

    for name, url, expected in (("r1", url1, expected_first), ("r2", url2, expected_second)):
        daemon.cli("create", name, "--backup", url, check=True)
        restored = mount(daemon, name, "c1")
        assert describe(restored) == expected
        unmount(daemon, name, "c1")


@pytest.mark.parametrize("keep", [False, True], ids=["with-data", "reference-only"])
def test_delete(host, keep):
    daemon = host.daemon
    daemon.cli("create", "gone", "--size", "64M", check=True)
    mountpoint = mount(daemon, "gone", "c1")
    with open(os.path.join(mountpoint, "f"), "w") as f:
        f.write("x")
    refused = daemon.cli("delete", "gone")
    assert refused.returncode != 0 and "is mounted" in refused.stderr
    unmount(daemon, "gone", "c1")
    daemon.cli("delete", *(["-r"] if keep else []), "gone", check=True)
    assert host.storage_exists("gone") == keep
    assert daemon.cli("inspect", "gone").returncode != 0
    assert host.attached_devices() == {}
