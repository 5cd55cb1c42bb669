"""Copying one file's data: a reflink (FICLONE) where the file system can, a sparse copy elsewhere.

A reflink is instant on XFS (reflink=1) and btrfs: extents are shared and
copied on write later, which is also what lets a backup find the ranges
two copies no longer share (`app.fs.fiemap`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

from app.fs.sparse import data_ranges

FICLONE = 0x40049409
# what a file system says when it cannot clone (not supported, across file systems, ...)
_CANNOT_CLONE = (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM)


def try_clone(src_fd: int, dest_fd: int) -> bool:
    """Make `dest_fd` share `src_fd`'s data; False when this file system cannot."""
    try:
        fcntl.ioctl(dest_fd, FICLONE, src_fd)
    except OSError as e:
        if e.errno not in _CANNOT_CLONE:
            raise
        return False
    return True


def copy_sparse(src_fd: int, dest_fd: int, size: int) -> None:
    """Copy the data ranges of a `size`-byte file; holes stay holes."""
    os.ftruncate(dest_fd, size)
    for start, end in data_ranges(src_fd, size):
        pos = start
        while pos < end:
            try:  # in-kernel copy; some kernels refuse it across file systems
                n = os.copy_file_range(src_fd, dest_fd, end - pos, pos, pos)
            except OSError:
                chunk = os.pread(src_fd, min(end - pos, 1 << 20), pos)
                n = os.pwrite(dest_fd, chunk, pos) if chunk else 0
            if n == 0:
                break
            pos += n


def clone_or_copy(src_fd: int, dest_fd: int) -> str:
    """A reflink when possible, else a sparse copy: returns "reflink" or "copy"."""
    if try_clone(src_fd, dest_fd):
        return "reflink"
    copy_sparse(src_fd, dest_fd, os.fstat(src_fd).st_size)
    return "copy"


def supports_reflink(directory: str) -> bool:
    """Whether files in `directory` can be cloned: a probe with two small files."""
    probe = os.path.join(directory, f".reflink-probe-{os.getpid()}")
    clone = probe + ".clone"
    try:
        with open(probe, "wb") as src_file:
            src_file.write(b"x" * 4096)
        with open(probe, "rb") as src_file, open(clone, "wb") as dst_file:
            return try_clone(src_file.fileno(), dst_file.fileno())
    except OSError:
        return False
    finally:
        for path in (probe, clone):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
