"""Scattered reads handed to the kernel ahead of time, so that the disk serves them together.

A backup reads the blocks it planned in file order, one at a time. Where
they are contiguous (a full backup) the kernel's sequential read-ahead keeps
the disk busy. Where they are scattered (an incremental backup: the blocks
that changed), each read waited for the disk on its own: twenty 1 MiB reads
after a cache drop took 0.10 s of a 0.18 s incremental backup.
POSIX_FADV_WILLNEED on the short runs ahead queues their reads at once.
Runs longer than the window are left to the kernel's read-ahead, so a full
backup reads as it did.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

WINDOW = 32 << 20  # bytes of the planned reads advised ahead of the one being read: page cache, not our memory


class ReadAhead:
    """For one file's reads, in file order: call `before_read(length)` before each of them."""

    def __init__(self, fd: int, reads: Iterable[tuple[int, int]], window: int = WINDOW):
        self._fd = fd
        self._window = window
        self._runs: list[tuple[int, int, int]] = []  # (offset, length, bytes of the reads before it)
        planned = 0
        for offset, length in reads:
            if self._runs and sum(self._runs[-1][:2]) == offset:
                start, run_length, before = self._runs[-1]
                self._runs[-1] = (start, run_length + length, before)
            else:
                self._runs.append((offset, length, planned))
            planned += length
        self._next = 0
        self._read = 0  # bytes of the reads done so far

    def before_read(self, length: int) -> None:
        """Advise every short run that starts within the window of the bytes read so far; count this read."""
        while self._next < len(self._runs) and self._runs[self._next][2] < self._read + self._window:
            offset, run_length, _ = self._runs[self._next]
            if run_length <= self._window:
                os.posix_fadvise(self._fd, offset, run_length, os.POSIX_FADV_WILLNEED)
            self._next += 1
        self._read += length
