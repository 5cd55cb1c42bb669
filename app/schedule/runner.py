"""The daemon's schedule runner: one thread that starts each schedule's run when its slot comes.

Each run goes in a thread of its own, so a slow store holds up only its own
schedule; a schedule whose previous run is still going on skips the slot
(runs of one schedule never overlap). A run due while the daemon was down
is due at start: it runs once, and its next slot is the first after it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from app.schedule.clock import Clock
from app.schedule.records import Entry
from app.schedule.service import ScheduleService

log = logging.getLogger(__name__)
MAX_SLEEP = 60.0  # seconds: the runner looks again at least this often (a changed system clock, a missed wake-up)


class ScheduleRunner:
    def __init__(self, schedules: ScheduleService, clock: Clock, wait_ready: Callable[[], object]):
        self.schedules = schedules
        self.clock = clock
        self._wait_ready = wait_ready  # the volume service's start-up recovery: runs need the volumes mounted
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._looked_at: datetime | None = None  # the time of the loop's last look at the schedules
        self._active = 0  # runs going on
        schedules.wake_runner = self.wake

    def start(self) -> None:
        threading.Thread(target=self._loop, name="schedule-runner", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        self._wait_ready()
        while not self._stop.is_set():
            self._wake.clear()
            now = self.clock.now()
            try:
                entries = self.schedules.records.all()
                for entry in entries:
                    if entry.next_run <= now and not self.schedules.is_running(entry.schedule.name):
                        self._start_run(entry)  # (one still running skips its slots: it sets its next when done)
            except Exception:
                log.exception("the schedule runner could not read the schedules; it tries again")
                entries = []
            with self._progress:
                self._looked_at = now
                self._progress.notify_all()
            upcoming = [entry.next_run for entry in entries if entry.next_run > now]
            delay = min([MAX_SLEEP, *((moment - now).total_seconds() for moment in upcoming)])
            self.clock.sleep(delay, self._wake)

    def _start_run(self, entry: Entry) -> None:
        with self._progress:
            self._active += 1

        def run() -> None:
            try:
                if not self.schedules.try_run(entry):
                    log.info("schedule %s: a run started by hand is going on; this slot is skipped", entry.schedule.name)
            except Exception:
                log.exception("schedule %s: the run failed", entry.schedule.name)
            finally:
                with self._progress:
                    self._active -= 1
                    self._progress.notify_all()
                self.wake()  # its next slot is set: sleep until that one

        threading.Thread(target=run, name=f"schedule-{entry.schedule.name}", daemon=True).start()

    def settle(self, moment: datetime, timeout: float) -> bool:
        """Wait until the runner has looked at the schedules at `moment` (or later) and every run it started
        has finished; False after `timeout` seconds. For tests that move a ManualClock."""
        with self._progress:
            return self._progress.wait_for(
                lambda: self._looked_at is not None and self._looked_at >= moment and self._active == 0, timeout
            )
