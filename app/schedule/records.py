"""Schedules in the catalog: each schedule, the volumes attached to it, and what its runs made.

A run writes the name of each snapshot and backup it is about to make
before making it (`pending`), and confirms it once made: a run killed in
between leaves a row the next run settles (the item exists: it is the
schedule's; it does not: the row goes), so nothing a schedule made escapes
its retention. Rows of a deleted volume or schedule go with it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.catalog import Catalog
from app.errors import Conflict, NotFound
from app.json_types import JSONObject
from app.schedule.spec import Keep, Timing, iso, parse_iso

SNAPSHOT = "snapshot"
BACKUP = "backup"


@dataclass(frozen=True)
class Schedule:
    name: str
    timing: Timing
    keep: Keep
    all_volumes: bool = False  # every volume (of `driver` when given), now and later
    driver: str | None = None
    dest: str | None = None  # a store URL: each run also backs up there
    s3_endpoint: str | None = None
    created_at: str = ""

    def spec(self) -> JSONObject:
        return {
            "all": self.all_volumes,
            "driver": self.driver,
            "every": self.timing.every,
            "cron": self.timing.cron,
            "dest": self.dest,
            "s3_endpoint": self.s3_endpoint,
            "keep": {rule: count for rule, count in vars(self.keep).items() if count},
        }


@dataclass
class RunState:
    """What `convoy schedule inspect` shows of past runs."""

    last_run: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    runs: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Item:
    kind: str  # snapshot | backup
    name: str  # the snapshot's name, or the backup's name in the schedule's store
    volume: str
    made_at: datetime
    pending: bool


@dataclass
class Entry:
    schedule: Schedule
    next_run: datetime
    state: RunState = field(default_factory=RunState)


class ScheduleRecords:
    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def add(self, schedule: Schedule, volumes: list[str], next_run: datetime) -> None:
        def insert(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM schedules WHERE name=?", (schedule.name,)).fetchone():
                raise Conflict(f"schedule {schedule.name} already exists; pick another name or delete it first")
            db.execute(
                "INSERT INTO schedules(name, spec, created_at, next_run, state) VALUES (?,?,?,?,?)",
                (schedule.name, json.dumps(schedule.spec()), schedule.created_at, iso(next_run), json.dumps(vars(RunState()))),
            )
            db.executemany(
                "INSERT INTO schedule_volumes(schedule, volume) VALUES (?,?)", [(schedule.name, v) for v in volumes]
            )

        self.catalog.change(insert)

    def get(self, name: str) -> Entry:
        rows = self.catalog.read("SELECT name, spec, created_at, next_run, state FROM schedules WHERE name=?", (name,))
        if not rows:
            raise NotFound(f"schedule {name} does not exist: `convoy schedule list` shows the schedules")
        return _entry(rows[0])

    def all(self) -> list[Entry]:
        rows = self.catalog.read("SELECT name, spec, created_at, next_run, state FROM schedules ORDER BY name")
        return [_entry(row) for row in rows]

    def delete(self, name: str) -> None:
        self.get(name)
        self.catalog.change(lambda db: db.execute("DELETE FROM schedules WHERE name=?", (name,)))

    def finish_run(self, name: str, next_run: datetime, state: RunState) -> None:
        self.catalog.change(
            lambda db: db.execute(
                "UPDATE schedules SET next_run=?, state=? WHERE name=?", (iso(next_run), json.dumps(vars(state)), name)
            )
        )

    # volumes

    def attach(self, name: str, volume: str) -> None:
        self.catalog.change(
            lambda db: db.execute("INSERT OR IGNORE INTO schedule_volumes(schedule, volume) VALUES (?,?)", (name, volume))
        )

    def volumes(self, name: str) -> list[str]:
        rows = self.catalog.read("SELECT volume FROM schedule_volumes WHERE schedule=? ORDER BY volume", (name,))
        return [row[0] for row in rows]

    # what runs made

    def expect(self, name: str, kind: str, item: str, volume: str, made_at: datetime) -> None:
        """Before making `item`: the row that keeps it the schedule's if the run is killed meanwhile."""
        self.catalog.change(
            lambda db: db.execute(
                "INSERT INTO schedule_items(kind, name, schedule, volume, made_at, pending) VALUES (?,?,?,?,?,1)",
                (kind, item, name, volume, iso(made_at)),
            )
        )

    def confirm(self, kind: str, item: str, volume: str) -> None:
        self.catalog.change(
            lambda db: db.execute(
                "UPDATE schedule_items SET pending=0 WHERE kind=? AND name=? AND volume=?", (kind, item, volume)
            )
        )

    def forget(self, kind: str, item: str, volume: str) -> None:
        self.catalog.change(
            lambda db: db.execute("DELETE FROM schedule_items WHERE kind=? AND name=? AND volume=?", (kind, item, volume))
        )

    def items(self, name: str, kind: str, volume: str) -> list[Item]:
        rows = self.catalog.read(
            "SELECT kind, name, volume, made_at, pending FROM schedule_items "
            "WHERE schedule=? AND kind=? AND volume=? ORDER BY made_at, name",
            (name, kind, volume),
        )
        return [Item(r[0], r[1], r[2], parse_iso(r[3]), bool(r[4])) for r in rows]

    def count(self, name: str, kind: str) -> int:
        rows = self.catalog.read("SELECT COUNT(*) FROM schedule_items WHERE schedule=? AND kind=? AND pending=0", (name, kind))
        return int(rows[0][0])


def _entry(row: tuple[Any, ...]) -> Entry:
    name, spec_json, created_at, next_run, state_json = row
    spec = json.loads(spec_json)
    schedule = Schedule(
        name=name,
        timing=Timing(every=spec.get("every"), cron=spec.get("cron")),
        keep=Keep(**spec.get("keep", {})),
        all_volumes=bool(spec.get("all")),
        driver=spec.get("driver"),
        dest=spec.get("dest"),
        s3_endpoint=spec.get("s3_endpoint"),
        created_at=created_at,
    )
    return Entry(schedule, parse_iso(next_run), RunState(**json.loads(state_json)))
