"""Small crash-safe file helpers."""

from __future__ import annotations

import os

_libc = None


def sync_filesystem(path: str) -> None:
    """Make everything written to the file system holding `path` durable (syncfs(2)).

    One call instead of an fsync per file and directory: a restore of many
    small files would otherwise pay a journal commit and a cache flush for
    each. Raises OSError when the file system reports a write error.
    """
    global _libc
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)
