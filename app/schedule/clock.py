"""The runner's clock: the system's, or one a test moves by hand (never in production).

The runner asks the clock for the time and sleeps on it, so a test can run
a week of hourly slots in seconds: it sets the time and wakes the runner.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from typing import Protocol

TEST_CLOCK_ENV = "CONVOY_TEST_CLOCK"  # set (to an ISO time) only by tests: the daemon then runs on a ManualClock


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        """Return after `seconds` of this clock, or as soon as `wake` is set."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        wake.wait(max(0.0, seconds))


class ManualClock:
    """Time stands still until `set` moves it; sleeping waits for a wake-up (a test's move), not for time."""

    def __init__(self, start: datetime):
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        wake.wait(1.0)  # a bounded wait: the runner looks again, at the same time, if nobody moved it


def clock_from_env() -> SystemClock | ManualClock:
    """The system clock, unless a test started the daemon with CONVOY_TEST_CLOCK=<ISO time>."""
    start = os.environ.get(TEST_CLOCK_ENV)
    if not start:
        return SystemClock()
    from app.schedule.spec import parse_iso

    logging.getLogger(__name__).warning("schedules run on a test clock set to %s (%s is set)", start, TEST_CLOCK_ENV)
    return ManualClock(parse_iso(start))
