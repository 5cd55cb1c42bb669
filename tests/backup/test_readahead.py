"""ReadAhead (app/fs/readahead.py): which of a backup's planned reads the kernel is asked to fetch ahead."""

import os
import subprocess
import time

import pytest

from app.fs.readahead import ReadAhead

MIB = 1 << 20


@pytest.fixture
def advised(monkeypatch):
    calls: list[tuple[int, int]] = []

    def record(fd, offset, length, advice):
        assert advice == os.POSIX_FADV_WILLNEED
        calls.append((offset, length))

    monkeypatch.setattr(os, "posix_fadvise", record)
    return calls


def read_all(reads, window):
    """Go through `reads` as the backup does."""
    ahead = ReadAhead(3, reads, window=window)
    for _offset, length in reads:
        ahead.before_read(length)


def test_scattered_blocks_are_advised_together_and_contiguous_ones_as_one_run(advised):
    reads = [(10 * MIB, MIB), (11 * MIB, MIB), (50 * MIB, MIB), (400 * MIB, MIB)]
    ahead = ReadAhead(3, reads, window=32 * MIB)
    ahead.before_read(MIB)  # before the first read: every run within the window at once
    assert advised == [(10 * MIB, 2 * MIB), (50 * MIB, MIB), (400 * MIB, MIB)]


def test_runs_beyond_the_window_wait_until_the_reading_gets_near(advised):
    reads = [(i * 100 * MIB, 4 * MIB) for i in range(6)]  # 24 MiB to read, 4 MiB at a time
    read_all(reads, window=10 * MIB)
    assert advised == [(i * 100 * MIB, 4 * MIB) for i in range(6)]
    advised.clear()
    ahead = ReadAhead(3, reads, window=10 * MIB)
    ahead.before_read(4 * MIB)
    assert advised == [(0, 4 * MIB), (100 * MIB, 4 * MIB), (200 * MIB, 4 * MIB)]  # runs starting below 10 MiB read


def test_a_long_sequential_run_is_left_to_the_kernels_own_read_ahead(advised):
    full = [(i * MIB, MIB) for i in range(890)]  # a full backup: one run of 890 MiB
    read_all(full, window=32 * MIB)
    assert advised == []


def cached_bytes(path) -> int:
    """The file's bytes in the page cache, as util-linux's fincore counts them."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[0])


def test_the_advised_blocks_are_read_into_the_page_cache_and_no_others(tmp_path):
    """On a real file on a disk: after the advice, the scattered blocks are cached (the reads they stand for do not
    wait for the disk one by one), and nothing between them is."""
    path = tmp_path / "volume.img"
    with open(path, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(MIB))
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert cached_bytes(path) == 0, "the test needs a file system with a page cache to drop (not tmpfs)"
        ReadAhead(fd, [(3 * MIB, MIB), (4 * MIB, MIB), (40 * MIB, MIB)]).before_read(MIB)
        deadline = time.monotonic() + 10
        while cached_bytes(path) < 3 * MIB and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cached_bytes(path) == 3 * MIB
    finally:
        os.close(fd)
