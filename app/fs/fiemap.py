"""Which ranges two reflinked files still share, from FIEMAP.

Two snapshots that are reflink copies of the same volume share physical
extents wherever the data has not been rewritten since. Where a range of the
new snapshot maps to the same physical bytes at the same offset as in the
previous snapshot, its content is identical and need not be read again.
Only plain, stable extents are trusted (no delayed allocation, inline,
encoded or unknown-location extents); FIEMAP_FLAG_SYNC flushes first.
"""

from __future__ import annotations

import fcntl
import os
import struct

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
UNTRUSTED = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400  # unknown, delalloc, encoded, encrypted, not aligned, inline, tail
_HEADER = struct.Struct("=QQLLLL")
_EXTENT = struct.Struct("=QQQQQLLLL")
_BATCH = 512


def extents(fd: int) -> list[tuple[int, int, int, int]] | None:
    """(logical, physical, length, flags) of every extent; None when unsupported."""
    out: list[tuple[int, int, int, int]] = []
    start = 0
    while True:
        buf = bytearray(_HEADER.size + _EXTENT.size * _BATCH)
        _HEADER.pack_into(buf, 0, start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC, 0, _BATCH, 0)
        try:
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
        except OSError:
            return None
        mapped = _HEADER.unpack_from(buf, 0)[3]
        if mapped == 0:
            return out
        last = False
        for i in range(mapped):
            logical, physical, length, _r1, _r2, flags, *_ = _EXTENT.unpack_from(buf, _HEADER.size + i * _EXTENT.size)
            out.append((logical, physical, length, flags))
            last = bool(flags & FIEMAP_EXTENT_LAST)
            start = logical + length
        if last:
            return out


def shared_ranges(old_fd: int, new_fd: int) -> list[tuple[int, int]]:
    """[start, end) ranges where both files map the same physical bytes at the same offset."""
    if os.fstat(old_fd).st_dev != os.fstat(new_fd).st_dev:
        return []
    old = extents(old_fd)
    new = extents(new_fd)
    if not old or not new:
        return []
    # logical -> physical delta for each trusted extent of the old file
    old_trusted = [(lo, lo + ln, ph - lo) for lo, ph, ln, fl in old if not fl & UNTRUSTED and ph]
    result: list[tuple[int, int]] = []
    i = 0
    for lo, ph, ln, fl in new:
        if fl & UNTRUSTED or not ph:
            continue
        start, end, delta = lo, lo + ln, ph - lo
        while i < len(old_trusted) and old_trusted[i][1] <= start:
            i += 1
        j = i
        while j < len(old_trusted) and old_trusted[j][0] < end:
            o_start, o_end, o_delta = old_trusted[j]
            if o_delta == delta:
                s, e = max(start, o_start), min(end, o_end)
                if s < e:
                    if result and result[-1][1] == s:
                        result[-1] = (result[-1][0], e)
                    else:
                        result.append((s, e))
            j += 1
    return result


def covered(ranges: list[tuple[int, int]], start: int, end: int) -> bool:
    """Whether [start, end) lies inside one of the sorted, merged `ranges`."""
    lo, hi = 0, len(ranges)
    while lo < hi:
        mid = (lo + hi) // 2
        if ranges[mid][1] <= start:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(ranges) and ranges[lo][0] <= start and end <= ranges[lo][1]


def changed_ranges(previous_image: str, image: str) -> list[tuple[int, int]]:
    """What differs between two reflinked image files: the complement of their shared extents."""
    a = os.open(previous_image, os.O_RDONLY | os.O_CLOEXEC)
    b = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
    try:
        shared = shared_ranges(a, b)
        size = os.fstat(b).st_size
    finally:
        os.close(a)
        os.close(b)
    changed, pos = [], 0
    for s, e in shared:
        if s > pos:
            changed.append((pos, s))
        pos = max(pos, e)
    if pos < size:
        changed.append((pos, size))
    return changed
