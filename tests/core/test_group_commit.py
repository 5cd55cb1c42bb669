"""Concurrent changes share one durable commit, and each caller still gets its own answer."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.catalog import Catalog, SnapshotRecord, VolumeRecord
from app.fs.sync import FsyncGroup
from app.group_commit import GroupCommit


def test_changes_made_at_once_share_commits_and_each_caller_gets_its_own_result():
    batches: list[list[int]] = []

    def commit(items: list[int]) -> list[int]:
        time.sleep(0.02)  # a disk flush: callers arriving meanwhile join the next commit
        batches.append(items)
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(commit)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(group.submit, range(40)))
    assert results == [item * 10 for item in range(40)]
    assert sorted(item for batch in batches for item in batch) == list(range(40)), "each change committed once"
    assert len(batches) <= 10, f"40 changes 8 at a time took {len(batches)} commits: {[len(b) for b in batches]}"


def test_a_failing_change_fails_its_own_caller_and_a_failing_commit_fails_every_caller_of_it():
    def commit(items: list[int]) -> list[int | BaseException]:
        if 99 in items:
            raise OSError("the disk failed")
        return [ValueError(f"bad {item}") if item < 0 else item for item in items]

    group: GroupCommit[int, int | BaseException] = GroupCommit(commit)
    assert group.submit(1) == 1
    with pytest.raises(ValueError, match="bad -1"):
        group.submit(-1)
    with pytest.raises(OSError, match="the disk failed"):
        group.submit(99)
    assert group.submit(2) == 2, "a failed commit leaves the next one working"


def test_catalog_changes_at_once_are_all_durable_except_the_one_that_failed(tmp_path: Path):
    catalog = Catalog(tmp_path / "catalog.db")
    try:
        catalog.put(VolumeRecord("vol", "vfs", None, "2026-01-01T00:00:00Z"))
        catalog.put_snapshot(SnapshotRecord("taken", "vol", "2026-01-01T00:00:00Z"))

        def change(i: int) -> None:
            if i == 7:  # a snapshot name that exists: this caller's error alone
                catalog.put_snapshot(SnapshotRecord("taken", "vol", "2026-01-01T00:00:00Z"))
            else:
                catalog.put(VolumeRecord(f"v{i}", "vfs", i + 1, "2026-01-01T00:00:00Z"))

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(change, i) for i in range(32)]
        errors = {i: f.exception() for i, f in enumerate(futures) if f.exception() is not None}
        assert list(errors) == [7] and isinstance(errors[7], sqlite3.IntegrityError)
    finally:
        catalog.close()
    reopened = Catalog(tmp_path / "catalog.db")  # what the next start reads
    try:
        names = {record.name for record in reopened.all()}
        assert names == {"vol"} | {f"v{i}" for i in range(32) if i != 7}
        assert [s.name for s in reopened.snapshots("vol")] == ["taken"]
    finally:
        reopened.close()


def test_fsync_group_syncs_what_every_caller_named(tmp_path: Path):
    group = FsyncGroup()
    fds = [os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY) for _ in range(4)]
    try:
        threads = [threading.Thread(target=group.fsync, args=(fd,)) for fd in fds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with pytest.raises(OSError):
            group.fsync(12345)  # a descriptor that is not open: that caller's error
        group.fsync(fds[0])  # and the group still works
    finally:
        for fd in fds:
            os.close(fd)
