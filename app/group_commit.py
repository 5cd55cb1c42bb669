"""Group commit: concurrent callers share one durable commit.

A durable commit (an fsync, a SQLite commit with synchronous=FULL) costs a
disk flush whether it carries one change or fifty. Docker creates volumes
several at a time, so each caller hands its change to `submit` and waits:
whoever finds no commit under way commits everything queued so far in one
go, and the others return when a commit that includes their change is done.
A caller's answer is never given before its own change is durable, so
durability per answered request is what a commit per request gave.

No thread of its own: the first waiter does the work (leader/follower), so
nothing has to be started or stopped, and one caller alone commits at once.
A leader waits a little (at most half a commit's time, 20 ms) for as many changes
as the last commit took, so steady concurrent callers keep sharing flushes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

MAX_GATHER = 0.02  # seconds a leader may wait for more changes

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    done: bool = False
    result: Result | None = None
    error: BaseException | None = field(default=None)


class GroupCommit(Generic[Item, Result]):
    """Runs `commit_batch(items)` for every change queued while the previous commit ran.

    `commit_batch` returns one outcome per item, in order: its result, or the
    exception that item's caller gets. An exception raised by `commit_batch`
    itself (the commit failed) goes to every caller of the batch.
    """

    def __init__(self, commit_batch: Callable[[list[Item]], Sequence[Result | BaseException]]):
        self._commit_batch = commit_batch
        self._queue: list[_Pending[Item, Result]] = []
        self._committing = False  # a leader is gathering or committing a batch
        self._changed = threading.Condition()  # guards all of these; notified on every change
        self._last_size = 0  # how many changes the last commit took
        self._last_seconds = 0.0  # and how long it took

    def submit(self, item: Item) -> Result:
        """Commit `item` (with whatever else is queued); returns its result once durable."""
        pending: _Pending[Item, Result] = _Pending(item)
        with self._changed:
            self._queue.append(pending)
            self._changed.notify_all()  # a leader gathering its batch waits for it
            # a follower returns as soon as the commit that took its change ends
            while not pending.done and self._committing:
                self._changed.wait()
            lead = not pending.done
            if lead:  # no commit under way: lead one of everything queued
                self._committing = True
                self._gather()
                batch, self._queue = self._queue, []
        if lead:
            started = time.monotonic()
            try:
                self._commit(batch)
            finally:
                with self._changed:
                    self._committing = False
                    self._last_size, self._last_seconds = len(batch), time.monotonic() - started
                    self._changed.notify_all()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]  # set by _commit when there was no error

    def _gather(self) -> None:
        """Wait (briefly) for as many changes as the last commit took: the callers it answered are
        sending their next ones. Without it, the first of them would commit alone and the rest
        after it, two flushes where one does. At most half a commit's time (and never more than
        MAX_GATHER: a disk that stalled once must not slow every later change); none for a lone caller."""
        deadline = time.monotonic() + min(self._last_seconds / 2, MAX_GATHER)
        while len(self._queue) < self._last_size:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._changed.wait(left)

    def _commit(self, batch: list[_Pending[Item, Result]]) -> None:
        try:
            outcomes = list(self._commit_batch([pending.item for pending in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"a group commit returned {len(outcomes)} outcomes for {len(batch)} changes")
        except BaseException as err:  # noqa: BLE001 - handed to every caller of the batch, who re-raises it
            outcomes = [err] * len(batch)
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                pending.error = outcome
            else:
                pending.result = outcome
            pending.done = True
