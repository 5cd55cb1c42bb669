"""Where a file holds data: SEEK_DATA/SEEK_HOLE, so holes are never read."""

from __future__ import annotations

import errno
import os


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
