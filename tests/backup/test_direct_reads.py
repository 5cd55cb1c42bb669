"""A backup reads its snapshot around the page cache where it can, and through it where it cannot."""

import os
import shutil
import subprocess
import tempfile

import pytest

from app.backup import Progress, SnapshotSource, create_backup, list_backups, restore_backup
from app.errors import Conflict
from tests.backup.treecheck import describe

MIB = 1 << 20


def resident_bytes(path) -> int:
    """How much of `path` is in the page cache (util-linux fincore)."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return int(out.strip())


def test_backup_leaves_the_host_page_cache_alone(tmp_path):
    """Backing up a cold 24 MiB file brings none of it into the page cache, so a
    large backup does not evict what the host's programs had cached, and the
    restore of what it stored is byte-identical (odd tail included)."""
    vol = tmp_path / "vol"
    vol.mkdir()
    data = vol / "data.bin"
    data.write_bytes(os.urandom(24 * MIB + 4097))
    fd = os.open(data, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert resident_bytes(data) < MIB, "the test needs the file out of the cache to start with"

    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", str(vol)))

    assert resident_bytes(data) <= 64 * 1024  # at most the tail, read through the cache
    restore_backup(result["url"], str(tmp_path / "r"))
    assert describe(tmp_path / "r") == describe(vol)


def test_snapshot_on_tmpfs_is_read_through_the_page_cache(tmp_path):
    """tmpfs refuses O_DIRECT: a snapshot there is read the ordinary way, completely."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    vol = tempfile.mkdtemp(dir="/dev/shm", prefix="convoy-test-")
    try:
        with open(os.path.join(vol, "data.bin"), "wb") as f:
            f.write(os.urandom(5 * MIB + 123))
        result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", vol))
        restore_backup(result["url"], str(tmp_path / "r"))
        assert describe(tmp_path / "r") == describe(vol)
    finally:
        shutil.rmtree(vol)


def test_a_file_that_shrinks_during_the_backup_fails_it(tmp_path):
    """A live volume's file cut short while its blocks are read: the backup fails saying so
    (nothing is committed), instead of storing a file with a hole where data was."""
    vol = tmp_path / "vol"
    vol.mkdir()
    data = vol / "data.bin"
    data.write_bytes(os.urandom(64 * MIB))

    def shrink_once(_progress):
        if data.stat().st_size:
            os.truncate(data, 0)

    store = f"vfs://{tmp_path}/store"
    with pytest.raises(Conflict, match=r"data\.bin changed during the backup.*back up a snapshot"):
        create_backup(store, "vol1", SnapshotSource("s", str(vol)), progress=Progress(callback=shrink_once, interval=0))
    assert list_backups(store) == []
