"""fallocate(2) itself: Python has only posix_fallocate, which glibc turns into
writing zeros where the file system cannot allocate (NFSv3), doubling the I/O
it was meant to save. Here an unsupported file system is just a no-op."""

from __future__ import annotations

import ctypes
import errno

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]

FALLOC_FL_KEEP_SIZE = 1
_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})


def allocate(fd: int, offset: int, length: int, mode: int = 0) -> None:
    """Allocate `length` bytes at `offset` of file `fd` in as few pieces as the file
    system can; nothing where it cannot. Raises OSError for anything else (ENOSPC)."""
    if _libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        if err not in _UNSUPPORTED:
            raise OSError(err, f"fallocate: {errno.errorcode.get(err, err)}")
