"""The snapshot walk and its clean-up, called directly on temporary directories.

A failed snapshot leaves no descriptor open and no half copy; a tree too deep
to copy gets a clear Conflict; an entry removed by a container while it is
copied is simply not in the snapshot; leftovers of a crashed snapshot are
removed without following links.
"""

import contextlib
import errno
import os
import stat
import time
from pathlib import Path

import pytest

from app.errors import Conflict, Unavailable
from app.storage import vfs as vfs_module
from app.storage import vfs_snapshot
from app.storage.driver import VolumeRef, VolumeSpec
from app.storage.vfs import VfsDriver
from app.storage.vfs_snapshot import MAX_DEPTH, snapshot_directory

SECRET = "HOST SECRET: must never be touched"


def open_fds(under: Path) -> set[str]:
    """What this process holds open under `under` (the test's own directory, where its tree is): the
    descriptors a walk could leak. (Other tests' objects, collected meanwhile, close theirs elsewhere in /tmp.)"""
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since the listing
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(under)):
                held.add(f"{fd} -> {target}")
    return held


def nested(base: Path, depth: int) -> Path:
    """`base/d/d/.../d`, `depth` directories below `base`; returns the deepest."""
    deepest = base.joinpath(*["d"] * depth)
    deepest.mkdir(parents=True)
    return deepest


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "host-canary"
    path.mkdir()
    (path / "passwd").write_text(SECRET)
    (path / "vol1").mkdir()
    (path / "vol1" / "old.partial").mkdir()
    (path / "vol1" / "old.partial" / "kept").write_text(SECRET)
    return path


def canary_state(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_text() if p.is_file() else "<dir>" for p in sorted(path.rglob("*"))}


# depth and descriptors


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300])
def test_a_tree_deeper_than_the_limit_gets_a_clear_conflict_and_leaves_no_descriptor(tmp_path, depth):
    volume = tmp_path / "vol"
    (nested(volume, depth) / "f").write_text("deep")
    before = open_fds(tmp_path)
    with pytest.raises(Conflict) as caught:
        snapshot_directory(str(volume), str(tmp_path / "snaps" / "s1"))
    message = str(caught.value)
    assert f"more than {MAX_DEPTH} directories deep" in message, message
    assert str(volume.joinpath(*["d"] * (MAX_DEPTH + 1))) in message, message
    assert "move" in message and "take the snapshot again" in message, message
    assert open_fds(tmp_path) == before
    assert not (tmp_path / "snaps" / "s1").exists(), "no half snapshot kept"


def test_a_tree_at_the_limit_is_copied(tmp_path):
    volume = tmp_path / "vol"
    (nested(volume, MAX_DEPTH) / "f").write_text("deep")
    before = open_fds(tmp_path)
    snapshot_directory(str(volume), str(tmp_path / "s1"))
    assert open_fds(tmp_path) == before
    assert (tmp_path / "s1").joinpath(*["d"] * MAX_DEPTH, "f").read_text() == "deep"


def fail_with_no_space(monkeypatch, volume):
    real = vfs_snapshot._copy_file

    def copy_file(src_dir, dst_dir, name, seen, tree, rel):
        if name == "fail-here":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src_dir, dst_dir, name, seen, tree, rel)

    monkeypatch.setattr(vfs_snapshot, "_copy_file", copy_file)
    return OSError


def swap_file_for_directory(monkeypatch, volume):
    """What a container can do between the listing of a directory and the copy of its entry."""
    real = vfs_snapshot._entries

    def entries(dir_fd):
        listed = list(real(dir_fd))
        if any(name == "fail-here" for name, _ in listed):
            deepest = next(volume.rglob("fail-here"))
            deepest.unlink()
            deepest.mkdir()
        return iter(listed)

    monkeypatch.setattr(vfs_snapshot, "_entries", entries)
    return Conflict


@pytest.mark.parametrize("failure", [fail_with_no_space, swap_file_for_directory])
def test_a_failure_mid_walk_leaves_no_descriptor_open(tmp_path, monkeypatch, failure):
    volume = tmp_path / "vol"
    deepest = nested(volume, 100)
    (deepest / "a").write_text("copied first")
    (deepest / "fail-here").write_text("the copy fails here")
    expected = failure(monkeypatch, volume)
    before = open_fds(tmp_path)
    with pytest.raises(expected):
        snapshot_directory(str(volume), str(tmp_path / "s1"))
    assert open_fds(tmp_path) == before, "descriptors of the walk left open"
    assert not (tmp_path / "s1").exists()


# entries removed while they are copied


def make_special(volume: Path, kind: str) -> Path:
    entry = volume / "gone"
    if kind == "fifo":
        os.mkfifo(entry)
    elif kind == "symlink":
        entry.symlink_to("target")
    else:
        os.mknod(entry, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    return entry


@pytest.mark.parametrize("kind", ["fifo", "symlink", "device"])
def test_a_special_file_removed_before_its_metadata_is_copied_is_not_in_the_snapshot(tmp_path, monkeypatch, kind):
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "kept").write_text("data")
    entry = make_special(volume, kind)
    real_read = vfs_snapshot.xattrs.read

    def read(target):
        if isinstance(target, str) and target.endswith("/gone"):
            entry.unlink()  # the container removes it just now
        return real_read(target)

    monkeypatch.setattr(vfs_snapshot.xattrs, "read", read)
    before = open_fds(tmp_path)
    assert snapshot_directory(str(volume), str(tmp_path / "s1")) in ("copy", "reflink")
    assert sorted(os.listdir(tmp_path / "s1")) == ["kept"]
    assert open_fds(tmp_path) == before


# leftovers of a crashed snapshot


def started_driver(tmp_path) -> VfsDriver:
    driver = VfsDriver({"vfs.path": str(tmp_path / "vfs")}, tmp_path / "state")
    driver.start()
    return driver


def plant_partials(snapshots: Path, canary: Path) -> None:
    (snapshots / "vol1").mkdir(parents=True, exist_ok=True)
    (snapshots / "vol1" / "s-file.partial").write_text("a file where a half snapshot would be")
    (snapshots / "vol1" / "s-link.partial").symlink_to(canary)
    (snapshots / "vol1" / "s-dir.partial").mkdir()
    (snapshots / "vol1" / "s-dir.partial" / "half").write_text("half copied")
    (snapshots / "vol1" / "done").mkdir()


def test_start_up_removes_partial_files_and_links_without_following_them(tmp_path, canary):
    driver = started_driver(tmp_path)
    before = canary_state(canary)
    plant_partials(driver.snapshots_dir, canary)
    driver.start()
    assert sorted(os.listdir(driver.snapshots_dir / "vol1")) == ["done"]
    assert canary_state(canary) == before


def test_start_up_clean_up_stays_in_the_snapshots_directory_it_checked(tmp_path, monkeypatch, canary):
    """`.convoy/snapshots` swapped for a link after it was opened: the clean-up never goes there."""
    driver = started_driver(tmp_path)
    before = canary_state(canary)
    snapshots = driver.snapshots_dir
    (snapshots / "vol1").mkdir()
    real = vfs_module.is_real_dir
    swapped = []

    def is_real_dir(dir_fd, name):
        if not swapped:
            snapshots.rename(snapshots.with_name("snapshots.moved"))
            snapshots.symlink_to(canary)
            swapped.append(True)
        return real(dir_fd, name)

    monkeypatch.setattr(vfs_module, "is_real_dir", is_real_dir)
    driver._remove_partial_snapshots()
    assert canary_state(canary) == before


@pytest.mark.parametrize("leftover", ["file", "link", "dir"])
def test_create_snapshot_replaces_a_leftover_partial_of_any_type(tmp_path, canary, leftover):
    driver = started_driver(tmp_path)
    before = canary_state(canary)
    driver.create_volume(VolumeSpec(name="vol1", size=None, created_at="2026-01-01T00:00:00Z"))
    (driver.volume_dir("vol1") / "data").write_text("volume data")
    parent = driver.snapshots_dir / "vol1"
    parent.mkdir(parents=True, exist_ok=True)
    partial = parent / "snap1.partial"
    if leftover == "file":
        partial.write_text("left by a crash")
    elif leftover == "link":
        partial.symlink_to(canary)
    else:
        partial.mkdir()
        (partial / "half").write_text("half copied")
    driver.create_snapshot(VolumeRef("vol1", None, {}), "snap1")
    assert sorted(os.listdir(parent)) == ["snap1"]
    assert (parent / "snap1" / "data").read_text() == "volume data"
    assert canary_state(canary) == before


@pytest.mark.needs_root
def test_daemon_start_up_removes_partial_files_and_links_without_a_traceback(daemon, canary):
    before = canary_state(canary)
    snapshots = daemon.root / "vfs" / ".convoy" / "snapshots"
    plant_partials(snapshots, canary)
    daemon.stop()
    daemon.start()
    deadline = time.monotonic() + 20  # start-up work runs after the sockets listen
    while time.monotonic() < deadline and sorted(os.listdir(snapshots / "vol1")) != ["done"]:
        time.sleep(0.1)
    assert sorted(os.listdir(snapshots / "vol1")) == ["done"]
    assert canary_state(canary) == before
    daemon.docker_ok("List")
    assert "Traceback" not in daemon.log_text(), daemon.log_text()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EROFS])
def test_a_storage_failure_mid_snapshot_is_reported_as_unavailable(tmp_path, monkeypatch, code):
    driver = started_driver(tmp_path)
    driver.create_volume(VolumeSpec(name="vol1", size=None, created_at="2026-01-01T00:00:00Z"))
    deepest = nested(driver.volume_dir("vol1"), 5)
    (deepest / "fail-here").write_text("data")
    real = vfs_snapshot._copy_file

    def copy_file(src_dir, dst_dir, name, seen, tree, rel):
        if name == "fail-here":
            raise OSError(code, os.strerror(code))
        return real(src_dir, dst_dir, name, seen, tree, rel)

    monkeypatch.setattr(vfs_snapshot, "_copy_file", copy_file)
    before = open_fds(tmp_path)
    with pytest.raises(Unavailable) as caught:
        driver.create_snapshot(VolumeRef("vol1", None, {}), "snap1")
    assert f"cannot copy volume vol1 to {driver.snapshot_dir('vol1', 'snap1')}: {os.strerror(code)}" in str(caught.value)
    assert "take the snapshot again" in str(caught.value)
    assert open_fds(tmp_path) == before
    assert os.listdir(driver.snapshots_dir / "vol1") == [], "no half snapshot kept"
