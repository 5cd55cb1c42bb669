"""A bounded pool of worker threads.

The submitting thread blocks once `max_pending` tasks are queued or running,
so memory stays bounded (pending tasks hold at most one block each) whatever
the volume size. The first failure is re-raised by `submit` or `close`; the
rest of the work is then skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVarTuple, Unpack

if TYPE_CHECKING:
    from .objectstore import ObjectStore

Ts = TypeVarTuple("Ts")

# block bytes the worker threads of one job may hold at once (each holds about
# two blocks: the stored form and the data): the daemon's memory goal is
# 150 MiB, whatever a store's block size
BLOCK_MEMORY = 64 << 20


def worker_count(store: ObjectStore, block_size: int, floor: int, asked: int | None = None) -> int:
    """Threads for a job over `store`'s blocks: `asked`, else the store's
    parallelism (at least `floor`), but never more than BLOCK_MEMORY allows."""
    if asked:
        return asked
    return max(2, min(max(floor, store.parallelism), BLOCK_MEMORY // (2 * block_size)))


class BoundedPool:
    def __init__(self, workers: int, max_pending: int | None = None, name: str = "convoy-backup"):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = threading.Semaphore(max_pending or workers * 3)
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def _done(self, fut: Future[None]) -> None:
        self._slots.release()
        exc = fut.exception()
        if exc is not None:
            with self._lock:
                if self._error is None:
                    self._error = exc

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[[Unpack[Ts]], object], *args: *Ts) -> None:
        self.raise_error()
        self._slots.acquire()
        fut = self._pool.submit(self._run, fn, args)
        fut.add_done_callback(self._done)

    def _run(self, fn: Callable[[Unpack[Ts]], object], args: tuple[*Ts]) -> None:
        if self._error is None:
            fn(*args)

    def close(self) -> None:
        """Wait for everything submitted; re-raise the first failure."""
        self._pool.shutdown(wait=True)
        self.raise_error()

    def abort(self) -> None:
        with self._lock:
            if self._error is None:
                self._error = RuntimeError("aborted")
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BoundedPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
