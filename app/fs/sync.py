"""Small crash-safe file helpers."""

from __future__ import annotations

import os

from app.group_commit import GroupCommit

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


class FsyncGroup:
    """fsync(2) shared by concurrent callers (`app.group_commit`): one flush per group, not per caller.

    Each file or directory in a group is synced once, whichever caller's
    descriptor names it; a caller returns when everything it named is durable.
    """

    def __init__(self) -> None:
        self._group: GroupCommit[tuple[int, ...], None] = GroupCommit(_fsync_each_once)

    def fsync(self, *fds: int) -> None:
        """Make what `fds` refer to durable; raises the OSError of a failed fsync of one of them."""
        self._group.submit(fds)


def _fsync_each_once(requests: list[tuple[int, ...]]) -> list[OSError | None]:
    synced: dict[tuple[int, int], OSError | None] = {}  # (device, inode) -> its fsync's error
    outcomes: list[OSError | None] = []
    for fds in requests:
        error: OSError | None = None
        for fd in fds:
            try:
                st = os.fstat(fd)
                key = (st.st_dev, st.st_ino)
                if key not in synced:
                    try:
                        os.fsync(fd)
                        synced[key] = None
                    except OSError as err:
                        synced[key] = err
                error = error or synced[key]
            except OSError as err:  # a bad descriptor: the caller's own mistake, told to it alone
                error = error or err
        outcomes.append(error)
    return outcomes
