"""Progress is reported in bytes; a cancelled backup commits nothing and the next one succeeds."""

import os
import threading

import pytest

from app.backup import Cancelled, Progress, SnapshotSource, create_backup, list_backups, restore_backup, verify_backup
from tests.backup.treecheck import describe


def make_volume(path, mib=12):
    path.mkdir()
    (path / "data.bin").write_bytes(os.urandom(mib << 20))
    return path


def test_progress_counts_every_byte(tmp_path):
    vol = make_volume(tmp_path / "vol")
    seen = []
    progress = Progress(callback=lambda p: seen.append((p.done_bytes, p.total_bytes)), interval=0)
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", str(vol)), progress=progress)
    assert seen[-1] == (12 << 20, 12 << 20)
    assert all(done <= total for done, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    seen.clear()
    progress = Progress(callback=lambda p: seen.append((p.done_bytes, p.total_bytes)), interval=0)
    restore_backup(result["url"], str(tmp_path / "r"), progress=progress)
    assert seen[-1] == (12 << 20, 12 << 20)


def test_cancelled_backup_commits_nothing(tmp_path):
    vol = make_volume(tmp_path / "vol", mib=40)
    dest = f"vfs://{tmp_path}/store"
    cancel = threading.Event()

    def cancel_half_way(p):
        if p.done_bytes >= 8 << 20:
            cancel.set()

    with pytest.raises(Cancelled) as err:
        create_backup(
            dest, "vol1", SnapshotSource("s", str(vol)), progress=Progress(callback=cancel_half_way, cancel=cancel, interval=0)
        )
    assert "cancelled" in str(err.value) and "nothing was committed" in str(err.value)
    assert list_backups(dest) == []

    result = create_backup(dest, "vol1", SnapshotSource("s", str(vol)))
    assert 0 < result["stats"]["new_blocks"] < 40  # what the cancelled one uploaded is reused
    assert verify_backup(result["url"])["ok"]


def test_cancelled_restore_stops(tmp_path):
    vol = make_volume(tmp_path / "vol", mib=40)
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", str(vol)))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        restore_backup(result["url"], str(tmp_path / "r"), progress=Progress(cancel=cancel))


def test_store_on_tmpfs_without_o_direct(tmp_path):
    """tmpfs refuses O_DIRECT: the store falls back to ordinary writes and reads."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    import shutil
    import tempfile

    store = tempfile.mkdtemp(dir="/dev/shm", prefix="convoy-test-")
    try:
        vol = make_volume(tmp_path / "vol", mib=3)
        result = create_backup(f"vfs://{store}", "vol1", SnapshotSource("s", str(vol)))
        assert verify_backup(result["url"])["ok"]
        restore_backup(result["url"], str(tmp_path / "r"))
        assert describe(tmp_path / "r") == describe(vol)
    finally:
        shutil.rmtree(store)
