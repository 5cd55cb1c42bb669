"""kill -9 in the middle of a backup or a restore leaves nothing that trips the next run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.backup import SnapshotSource, create_backup, layout, list_backups, restore_backup, verify_backup
from tests.backup.treecheck import describe

ROOT = Path(__file__).resolve().parents[2]


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "tests.backup.slow_worker", *args], cwd=ROOT)


def wait_for(cond, timeout=30):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def count_blocks(store_dir):
    return sum(1 for _d, _s, files in os.walk(store_dir / layout.BLOCKS) for f in files if ".tmp-" not in f)


def make_volume(path):
    path.mkdir()
    for i in range(4):
        (path / f"f{i}.bin").write_bytes(os.urandom(5 << 20))
    return path


def test_kill_during_backup_then_next_backup_succeeds_and_verifies(tmp_path):
    vol = make_volume(tmp_path / "vol")
    store_dir = tmp_path / "store"
    dest = f"vfs://{store_dir}"
    proc = start("backup", dest, "vol1", str(vol))
    wait_for(lambda: count_blocks(store_dir) >= 5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = count_blocks(store_dir)
    assert 5 <= written < 20

    # nothing half-done is visible
    assert list_backups(dest) == []
    # the next try succeeds and reuses what the killed one uploaded
    result = create_backup(dest, "vol1", SnapshotSource("snap", str(vol)))
    assert result["stats"]["new_blocks"] == 20 - written
    report = verify_backup(result["url"])
    assert report["ok"] and report["blocks"] == 20
    restore_backup(result["url"], str(tmp_path / "r"))
    assert describe(tmp_path / "r") == describe(vol)


def test_kill_during_restore_then_restore_again_succeeds(tmp_path):
    vol = make_volume(tmp_path / "vol")
    dest = f"vfs://{tmp_path}/store"
    url = create_backup(dest, "vol1", SnapshotSource("snap", str(vol)))["url"]
    target = tmp_path / "half"
    proc = start("restore", url, str(target))
    wait_for(lambda: target.is_dir() and any(target.iterdir()))
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert describe(target) != describe(vol)  # it really was half-way

    assert verify_backup(url)["ok"]  # the store is untouched
    restore_backup(url, str(tmp_path / "again"))
    assert describe(tmp_path / "again") == describe(vol)


def test_lock_of_a_killed_backup_blocks_delete_until_it_expires(tmp_path):
    import json

    import pytest

    from app.backup import delete_backup
    from app.errors import Conflict

    vol = make_volume(tmp_path / "vol")
    store_dir = tmp_path / "store"
    dest = f"vfs://{store_dir}"
    kept = create_backup(dest, "other", SnapshotSource("snap", str(vol)))
    (vol / "new.bin").write_bytes(os.urandom(6 << 20))
    proc = start("backup", dest, "vol1", str(vol))
    wait_for(lambda: count_blocks(store_dir) >= kept["stats"]["new_blocks"] + 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    with pytest.raises(Conflict) as err:
        delete_backup(kept["url"])
    assert f"pid {proc.pid}" in str(err.value) and "expires" in str(err.value)

    # the killed process no longer renews its lock: once expired, delete goes ahead
    for lock in (store_dir / layout.LOCKS).glob("*.json"):
        doc = json.loads(lock.read_text())
        doc["expires_at"] = 0
        lock.write_text(json.dumps(doc))
    before = count_blocks(store_dir)
    result = delete_backup(kept["url"])
    assert result["expired_locks_removed"] == 1
    # no manifest is left: the deleted backup's blocks and the killed one's all go
    assert result["blocks_removed"] == before and count_blocks(store_dir) == 0
    assert list((store_dir / layout.LOCKS).glob("*.json")) == []
