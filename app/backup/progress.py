"""Progress and cancellation shared by long operations (backup, restore, verify)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

from app.errors import Cancelled

__all__ = ["Cancelled", "Progress", "ProgressView"]  # Cancelled is re-exported: long operations raise it from here


class ProgressView(TypedDict):
    """A job's progress as the control API shows it."""

    total_bytes: int
    done_bytes: int
    rate: float  # bytes per second since the start
    eta: float | None  # seconds left, when a rate and a total are known


@dataclass
class Progress:
    """Counts bytes; `callback(progress)` is called at most every `interval` seconds."""

    callback: Callable[[Progress], None] | None = None
    cancel: threading.Event | None = None
    interval: float = 0.25
    total_bytes: int = 0
    done_bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, n: int) -> None:
        with self._lock:
            self.done_bytes += n
        now = time.monotonic()
        if self.callback and now - self._last >= self.interval:
            self._last = now
            self.callback(self)

    def finish(self) -> None:
        if self.callback:
            self.callback(self)

    def check(self, what: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"{what} was cancelled; nothing was committed")

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done_bytes / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.rate
        if not rate or not self.total_bytes:
            return None
        return max(0.0, (self.total_bytes - self.done_bytes) / rate)

    def as_dict(self) -> ProgressView:
        return {"total_bytes": self.total_bytes, "done_bytes": self.done_bytes, "rate": self.rate, "eta": self.eta}
