"""Where a file holds data: SEEK_DATA/SEEK_HOLE, so holes are never read."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable


def data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """[start, end) ranges of `fd` that hold data; the rest reads as zeros.

    File systems without SEEK_DATA support report the whole file as data.
    """
    ranges: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # only a hole remains
                    break
                raise
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            ranges.append((start, end))
            pos = end
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return [(0, size)] if size else []
        raise
    return ranges


def cut(ranges: list[tuple[int, int]], block_size: int) -> list[tuple[int, int]]:
    """Split data ranges at multiples of `block_size`: (offset, length) blocks."""
    blocks = []
    for start, end in ranges:
        pos = start
        while pos < end:
            stop = min(end, (pos // block_size + 1) * block_size)
            blocks.append((pos, stop - pos))
            pos = stop
    return blocks


def merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) ranges sorted, with overlapping and touching ones joined and empty ones dropped."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


class Overlaps:
    """Whether blocks, asked about in ascending order, overlap any of `ranges`: one pass over both.

    A large EBS or thin volume reports thousands of changed ranges and has a
    million blocks: testing each block against every range took their product.
    """

    def __init__(self, ranges: Iterable[tuple[int, int]]):
        self._ranges = merged(ranges)
        self._next = 0  # the first range that does not end before the last block asked about
        self._last = 0

    def __call__(self, start: int, end: int) -> bool:
        if start < self._last:
            raise ValueError(f"blocks must be asked about in ascending order: {start} after {self._last}")
        self._last = start
        ranges = self._ranges
        while self._next < len(ranges) and ranges[self._next][1] <= start:
            self._next += 1
        return self._next < len(ranges) and ranges[self._next][0] < end
