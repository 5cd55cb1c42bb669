"""File descriptors shared by a restore's worker threads, closed by the last one done."""

from __future__ import annotations

import contextlib
import os
import threading


class FdRefs:
    """Pairs of descriptors (a plain one and an O_DIRECT one, -1 when none) of
    the files a restore's workers write, each closed when its last block
    is done, so a tree of many files never holds more open than are in flight."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining: dict[tuple[int, int], int] = {}

    def hold(self, fds: tuple[int, int], count: int) -> None:
        """`fds` stay open until `done(fds)` has been called `count` times."""
        with self._lock:
            self._remaining[fds] = count

    def done(self, fds: tuple[int, int]) -> None:
        with self._lock:
            self._remaining[fds] -= 1
            last = self._remaining[fds] == 0
            if last:
                del self._remaining[fds]
        if last:
            _close(fds)

    def close_all(self) -> None:
        """After a failure: close whatever is still open."""
        with self._lock:
            left, self._remaining = list(self._remaining), {}
        for fds in left:
            _close(fds)


def _close(fds: tuple[int, int]) -> None:
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
