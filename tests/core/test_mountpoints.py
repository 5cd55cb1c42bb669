"""`convoy mount NAME --mountpoint P` never mounts over, nor unmounts, what it did not mount.

It once reported success on an existing tmpfs without mounting, and the later
`convoy umount` unmounted the tmpfs (its data lost to the user); with P set
to another volume's mount point, Docker was handed the wrong volume.
"""

import subprocess
from pathlib import Path

import pytest

from tests.daemon_harness import REPO, mounted_points

pytestmark = pytest.mark.needs_root


@pytest.fixture
def tmpfs(tmp_path):
    """A user's tmpfs with data on it."""
    path = tmp_path / "users-tmpfs"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=True)
    (path / "precious").write_text("the user's data")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


def assert_tmpfs_intact(path):
    assert str(path) in mounted_points()
    assert (path / "precious").read_text() == "the user's data"


def test_mount_on_an_existing_tmpfs_is_refused_and_the_tmpfs_survives_umount(daemon, tmpfs):
    daemon.cli("create", "vol1", check=True)
    result = daemon.cli("mount", "vol1", "--mountpoint", str(tmpfs))
    assert result.returncode == 4, result.stderr
    assert f"{tmpfs} is already a mount point" in result.stderr
    assert_tmpfs_intact(tmpfs)
    assert daemon.cli("umount", "vol1").returncode == 4  # nothing of convoy's to unmount
    assert_tmpfs_intact(tmpfs)
    assert str(daemon.mount_root / "vol1") not in mounted_points(), "a refused mount leaves nothing mounted"


def test_a_mount_covered_later_by_another_is_not_unmounted_from_under_it(daemon, tmp_path):
    daemon.cli("create", "vol1", check=True)
    place = tmp_path / "mnt" / "vol1"
    assert daemon.cli("mount", "vol1", "--mountpoint", str(place), check=True).stdout.strip() == str(place)
    (place / "file").write_text("in the volume")
    assert daemon.cli("mount", "vol1", "--mountpoint", str(place), check=True)  # repeated: fine
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    assert sum(1 for line in mountinfo if line.split(" ")[4] == str(place)) == 1

    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(place)], check=True)  # the user stacks a tmpfs on it
    (place / "precious").write_text("the user's data")
    result = daemon.cli("umount", "vol1")
    assert result.returncode == 4 and "another mount on top" in result.stderr, result.stderr
    assert_tmpfs_intact(place)

    subprocess.run(["umount", str(place)], check=True)
    daemon.cli("umount", "vol1", check=True)
    assert str(place) not in mounted_points()
    assert (daemon.root / "vfs" / "vol1" / "file").read_text() == "in the volume"


def test_a_relative_mountpoint_is_refused(daemon):
    daemon.cli("create", "vol1", check=True)
    relative = "convoy-test-relative-mountpoint"
    try:
        result = daemon.cli("mount", "vol1", "--mountpoint", relative)
        assert result.returncode == 2, result.stderr
        assert f"mount point '{relative}' is relative: give an absolute path" in result.stderr
        assert not (REPO / relative).exists()
    finally:
        subprocess.run(["umount", "-l", str(REPO / relative)], check=False, capture_output=True)
        subprocess.run(["rmdir", str(REPO / relative)], check=False, capture_output=True)
    assert str(daemon.mount_root / "vol1") not in mounted_points()


PLACES = {
    "another volume's mount point": lambda d, t: d.mount_root / "other",
    "inside the mount root": lambda d, t: d.mount_root / "new" / "place",
    "the mount root itself": lambda d, t: d.mount_root,
    "another volume's data": lambda d, t: d.root / "vfs" / "other",
    "inside --root": lambda d, t: d.root / "anywhere",
    "over --root": lambda d, t: d.base,
    "through a link into the mount root": lambda d, t: t / "link" / "other",
}


@pytest.mark.parametrize("where", list(PLACES))
def test_mount_where_convoy_keeps_its_own_storage_is_refused(daemon, tmp_path, where):
    daemon.cli("create", "vol1", check=True)
    daemon.cli("create", "other", check=True)
    other = daemon.docker_ok("Mount", {"Name": "other", "ID": "c1"})["Mountpoint"]
    (tmp_path / "link").symlink_to(daemon.mount_root)
    place = PLACES[where](daemon, tmp_path)
    result = daemon.cli("mount", "vol1", "--mountpoint", str(place))
    assert result.returncode == 2, result.stderr
    assert "which convoy keeps for its own storage and mounts" in result.stderr
    assert daemon.docker_ok("Get", {"Name": "vol1"})["Volume"]["Status"]["mount_refs"] == 0
    assert not any(p.startswith(str(daemon.mount_root / "vol1")) for p in mounted_points())
    assert daemon.docker_ok("Path", {"Name": "other"})["Mountpoint"] == other


def test_mount_over_another_volumes_cli_mountpoint_is_refused(daemon, tmp_path):
    daemon.cli("create", "vol1", check=True)
    daemon.cli("create", "other", check=True)
    place = tmp_path / "shared-place"
    daemon.cli("mount", "other", "--mountpoint", str(place), check=True)
    (place / "mine").write_text("other's file")
    result = daemon.cli("mount", "vol1", "--mountpoint", str(place))
    assert result.returncode == 4 and "already a mount point" in result.stderr, result.stderr
    assert (place / "mine").read_text() == "other's file"
    daemon.cli("umount", "other", check=True)
    assert str(place) not in mounted_points()


def test_a_failed_reference_write_leaves_neither_the_volume_nor_the_extra_place_mounted(tmp_path, monkeypatch):
    """The bind at --mountpoint is outside the mount root: start-up reconciliation would never find it."""
    import sqlite3

    from tests.daemon_harness import in_process_service

    service, _driver, catalog, settings = in_process_service(tmp_path)
    service.create("vol1")
    place = tmp_path / "place"

    def fail(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(catalog, "add_ref", fail)
    try:
        with pytest.raises(sqlite3.OperationalError):
            service.mount("vol1", f"cli:{place}", extra_mountpoint=str(place))
        assert str(place) not in mounted_points()
        assert str(settings.mount_root / "vol1") not in mounted_points()
    finally:
        for point in (place, settings.mount_root / "vol1"):
            subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
