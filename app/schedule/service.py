"""Schedules: create, list, inspect, delete, and one run (snapshot, backup, retention) of one.

A run, for each volume of the schedule: a snapshot (the snapshot service),
a backup of it when the schedule has a store (the backup service's job),
then the keep rule over the snapshots this schedule made of that volume and
over the backups it made of it in its store; those it does not keep are
deleted as `convoy snapshot delete` and `convoy backup delete` do (the
latter collects the blocks no other backup uses). A schedule only ever
deletes what it made, so another schedule's backups are never its to drop,
and never the last intact backup of a volume in the store.
"""

from __future__ import annotations

import builtins
import logging
import secrets
import threading
from collections.abc import Callable
from datetime import datetime

from app.backup_service import BackupService
from app.errors import Conflict, ConvoyError, InvalidInput, NotFound, error_from
from app.jobs import Job
from app.json_types import JSONObject
from app.names import check_name
from app.schedule import events, retention
from app.schedule.records import BACKUP, SNAPSHOT, Entry, Item, Schedule, ScheduleRecords
from app.schedule.spec import iso, parse_keep, parse_timing
from app.service import VolumeService, now_rfc3339
from app.snapshot_service import SnapshotService
from app.storage.driver import SnapshotKind

log = logging.getLogger(__name__)


class ScheduleService:
    def __init__(
        self, volumes: VolumeService, snapshots: SnapshotService, backups: BackupService, now: Callable[[], datetime]
    ):
        self.volumes = volumes
        self.snapshots = snapshots
        self.backups = backups
        self.records = ScheduleRecords(volumes.catalog)
        self.now = now  # the runner's clock: a test's hand-moved one, or the system's
        self._running: dict[str, threading.Lock] = {}  # schedule -> held while a run of it goes on
        self._running_guard = threading.Lock()
        self._stores: dict[str, threading.Lock] = {}  # store URL -> held by the run writing or deleting there
        self.wake_runner: Callable[[], None] = lambda: None  # set by the runner: a new schedule's slot counts

    # the user's requests

    def create(
        self,
        name: str,
        *,
        volume: str | None = None,
        all_volumes: bool = False,
        driver: str | None = None,
        every: str | None = None,
        cron: str | None = None,
        dest: str | None = None,
        s3_endpoint: str | None = None,
        keep: str | None = None,
    ) -> JSONObject:
        check_name("schedule", name)
        if bool(volume) == all_volumes:
            raise InvalidInput("give exactly one of --volume VOL (one volume) and --all (every volume, now and later)")
        if driver:
            self.volumes.driver(driver)  # an enabled back-end, or an error listing them
            if not all_volumes:
                raise InvalidInput("--driver picks the volumes of --all; with --volume it is not needed: leave it out")
        timing = parse_timing(every, cron)
        if not keep:
            raise InvalidInput(
                "--keep is required, e.g. --keep last=24,daily=7,weekly=4 (rules: last, hourly, daily, weekly, monthly)"
            )
        rule = parse_keep(keep)
        if volume:
            self._check_takes_snapshots(self.volumes.require(volume).driver, f"volume {volume}")
        if s3_endpoint and not dest:
            raise InvalidInput("--s3-endpoint is the endpoint of --dest s3://...: give --dest too, or leave it out")
        if dest:
            from app.backup.urls import parse_store_url

            parse_store_url(dest)  # vfs:// or s3://, or an error that says how to write one
        schedule = Schedule(name, timing, rule, all_volumes, driver or None, dest or None, s3_endpoint or None, now_rfc3339())
        self.records.add(schedule, [volume] if volume else [], timing.next_after(self.now()))
        log.info("schedule %s created: %s, keep %s", name, timing, rule)
        self.wake_runner()
        return self.inspect(name)

    def _check_takes_snapshots(self, driver: str, what: str) -> None:
        if self.volumes.driver(driver).capabilities.snapshots is SnapshotKind.NONE:
            raise InvalidInput(f"{what} is on the {driver} back-end, which takes no snapshots: it cannot be scheduled")

    def check_attach(self, name: str, driver: str) -> None:
        """`docker volume create -o schedule=NAME`, before the volume is made: the schedule exists and takes it."""
        check_name("schedule", name)
        try:
            entry = self.records.get(name)
        except NotFound:
            raise InvalidInput(
                f"schedule {name} does not exist: create it first with `convoy schedule create {name} ...`, "
                "or leave out -o schedule (`convoy schedule list` shows the schedules)"
            ) from None
        schedule = entry.schedule
        if schedule.all_volumes and schedule.driver not in (None, driver):
            raise InvalidInput(
                f"schedule {name} takes the volumes of the {schedule.driver} back-end; this volume is {driver}: "
                f"create it with -o driver={schedule.driver}, or pick another schedule"
            )
        self._check_takes_snapshots(driver, "this volume")

    def attach(self, name: str, volume: str) -> None:
        """The volume, made, joins the schedule (a schedule of --all has it already)."""
        if not self.records.get(name).schedule.all_volumes:
            self.records.attach(name, volume)

    def delete(self, name: str) -> None:
        """Forget the schedule; what it made stays, as ordinary snapshots and backups."""
        check_name("schedule", name)
        if self.is_running(name):
            raise Conflict(f"schedule {name} is running; delete it once `convoy schedule inspect {name}` shows it has finished")
        self.records.delete(name)
        events.on_deleted(name)
        log.info("schedule %s deleted", name)

    def list(self) -> list[JSONObject]:
        return [self._view(entry) for entry in self.records.all()]

    def inspect(self, name: str) -> JSONObject:
        check_name("schedule", name)
        return self._view(self.records.get(name))

    def _view(self, entry: Entry) -> JSONObject:
        schedule, state = entry.schedule, entry.state
        return {
            "name": schedule.name,
            **schedule.spec(),
            "when": str(schedule.timing),
            "keep": str(schedule.keep),
            "volumes": self._targets(schedule),
            "created_at": schedule.created_at,
            "next_run": iso(entry.next_run),
            "running": self.is_running(schedule.name),
            **vars(state),
            "snapshots": self.records.count(schedule.name, SNAPSHOT),
            "backups": self.records.count(schedule.name, BACKUP),
        }

    def _targets(self, schedule: Schedule) -> builtins.list[str]:
        if not schedule.all_volumes:
            return self.records.volumes(schedule.name)
        takes_snapshots = {
            name for name, driver in self.volumes.drivers.items() if driver.capabilities.snapshots is not SnapshotKind.NONE
        }
        return [
            record.name
            for record in self.volumes.catalog.all()
            if schedule.driver in (None, record.driver) and record.driver in takes_snapshots and not record.restoring_from
        ]

    # runs

    def _lock_of(self, name: str) -> threading.Lock:
        return self._guard(self._running, name)

    def _guard(self, locks: dict[str, threading.Lock], key: str) -> threading.Lock:
        with self._running_guard:
            return locks.setdefault(key, threading.Lock())

    def is_running(self, name: str) -> bool:
        return self._lock_of(name).locked()

    def run(self, name: str) -> JSONObject:
        """Start one run now, whatever the slot; answers at once (`running` true) and the run goes on.

        A run of this schedule already going on is a Conflict: runs never overlap."""
        entry = self.records.get(name)
        lock = self._lock_of(name)
        if not lock.acquire(blocking=False):
            raise Conflict(f"schedule {name} is running already; `convoy schedule inspect {name}` shows when it has finished")

        def work() -> None:
            try:
                self._run(entry)
            except Exception:
                log.exception("schedule %s: the run failed", name)
            finally:
                lock.release()

        try:
            view = self.inspect(name)  # before the run: `runs` not counting it yet, `running` true
        except BaseException:
            lock.release()
            raise
        threading.Thread(target=work, name=f"schedule-{name}-by-hand", daemon=True).start()
        return view

    def try_run(self, entry: Entry) -> bool:
        """Run the schedule unless a run of it is going on (then False, and nothing happens)."""
        lock = self._lock_of(entry.schedule.name)
        if not lock.acquire(blocking=False):
            return False
        try:
            self._run(entry)
        finally:
            lock.release()
        return True

    def _run(self, entry: Entry) -> None:
        schedule, state = entry.schedule, entry.state
        started = self.now()
        errors: builtins.list[str] = []
        targets = self._targets(schedule)
        if not targets and not schedule.all_volumes:
            errors.append("it has no volume left (its volume was deleted): delete the schedule")
        for volume in targets:
            try:
                self._run_volume(schedule, volume, started)
            except ConvoyError as error:
                errors.append(f"volume {volume}: {error}")
            except Exception as error:  # a bug on one volume must not stop the others; logged
                log.exception("schedule %s: run on volume %s failed", schedule.name, volume)
                errors.append(f"volume {volume}: internal error ({error}); the daemon log has the details")
        finished = self.now()
        state.last_run, state.runs = iso(started), state.runs + 1
        if errors:
            state.last_error, state.last_error_at, state.failures = "; ".join(errors), iso(started), state.failures + 1
            log.warning("schedule %s: run of %s failed: %s", schedule.name, iso(started), state.last_error)
        else:
            state.last_success = iso(started)
            log.info("schedule %s: run of %s done on %d volume(s)", schedule.name, iso(started), len(targets))
        # the next slot after this run, not after the missed ones: a long outage costs one run, not a burst
        self.records.finish_run(schedule.name, schedule.timing.next_after(finished), state)  # none if deleted meanwhile
        events.on_run_finished(schedule.name, not errors, finished)

    def _run_volume(self, schedule: Schedule, volume: str, when: datetime) -> None:
        name = f"{schedule.name[:150]}-{when:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self._settle_pending(schedule, SNAPSHOT, volume, lambda item: self.volumes.catalog.get_snapshot(item) is not None)
        self.records.expect(schedule.name, SNAPSHOT, name, volume, when)  # on a failure it stays pending: settled next run
        self.snapshots.create(volume, name)
        self.records.confirm(SNAPSHOT, name, volume)
        if schedule.dest:
            # one schedule at a time per store: a delete's exclusive store lock would fail another's backup
            with self._guard(self._stores, schedule.dest):
                self._backup(schedule, volume, name, when)
        self._apply_to_snapshots(schedule, volume)

    def _backup(self, schedule: Schedule, volume: str, snapshot: str, when: datetime) -> None:
        """Back the new snapshot up (as `convoy backup create`), then apply the keep rule to the store."""
        assert schedule.dest is not None  # noqa: S101 - called only for a schedule with a store
        # a failed backup's row stays pending: the next run looks in the store, where a half-failed one may be whole
        self.records.expect(schedule.name, BACKUP, snapshot, volume, when)
        _wait(self.backups.create(snapshot, schedule.dest, schedule.s3_endpoint, snapshot))
        self.records.confirm(BACKUP, snapshot, volume)
        self._apply_to_backups(schedule, volume)

    def _settle_pending(self, schedule: Schedule, kind: str, volume: str, exists: Callable[[str], bool]) -> None:
        """Rows a killed run left: the item was made (the schedule's now), or not (the row goes)."""
        for item in self.records.items(schedule.name, kind, volume):
            if item.pending:
                if exists(item.name):
                    self.records.confirm(kind, item.name, volume)
                else:
                    self.records.forget(kind, item.name, volume)

    def _apply_to_snapshots(self, schedule: Schedule, volume: str) -> None:
        mine = [item for item in self.records.items(schedule.name, SNAPSHOT, volume) if not item.pending]
        present = []
        for item in mine:
            if self.volumes.catalog.get_snapshot(item.name) is None:
                self.records.forget(SNAPSHOT, item.name, volume)  # deleted by hand since
            else:
                present.append(item)
        for item in _doomed(present, schedule, good=None):
            try:
                self.snapshots.delete(item.name)
            except Conflict as error:  # being backed up by hand: the next run deletes it
                log.info("schedule %s keeps snapshot %s for now: %s", schedule.name, item.name, error)
                continue
            self.records.forget(SNAPSHOT, item.name, volume)

    def _apply_to_backups(self, schedule: Schedule, volume: str) -> None:
        assert schedule.dest is not None  # noqa: S101 - called only for a schedule with a store
        listed = {row["name"]: row for row in self.backups.list(schedule.dest, volume, schedule.s3_endpoint)}
        self._settle_pending(schedule, BACKUP, volume, lambda item: item in listed)
        present = []
        for item in self.records.items(schedule.name, BACKUP, volume):
            if item.name in listed:
                present.append(item)
            else:
                self.records.forget(BACKUP, item.name, volume)  # deleted by hand since
        good = {str(name) for name, row in listed.items() if not row.get("error")}  # any maker's, readable
        for item in _doomed(present, schedule, good=good):
            _wait(self.backups.delete(str(listed[item.name]["url"]), schedule.s3_endpoint))
            self.records.forget(BACKUP, item.name, volume)
            log.info("schedule %s deleted backup %s of %s (keep %s)", schedule.name, item.name, volume, schedule.keep)


def _doomed(items: list[Item], schedule: Schedule, good: set[str] | None) -> list[Item]:
    """The items the keep rule drops; with `good` (every intact backup of the volume), never all of those."""
    keep = retention.kept([(item.name, item.made_at) for item in items], schedule.keep)
    doomed = [item for item in items if item.name not in keep]
    if good is not None:
        allowed = retention.spare_last_good([(item.name, item.made_at) for item in doomed], good)
        doomed = [item for item in doomed if item.name in allowed]
    return doomed


def _wait(job: Job) -> JSONObject:
    """A job's result once it has finished; its error raised here."""
    job.done.wait()
    if job.state == "failed" and job.error is not None:
        raise error_from(job.error["kind"], job.error["message"])
    return job.result or {}
