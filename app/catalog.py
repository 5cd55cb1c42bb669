"""The persisted catalog: volumes and their mount references.

SQLite in WAL mode, because a volume record and its mount references change
together and must survive kill -9 and power loss consistently: one
transaction per change gives that, where a set of JSON files renamed one by
one could leave a reference without its volume. `synchronous=FULL` makes a
committed change durable before Docker hears "ok". Changes made at the same
time share one commit (`app.group_commit`): Docker creates volumes several at
once, and each commit is a disk flush.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.group_commit import GroupCommit
from app.storage.driver import SnapshotRef, VolumeRef

T = TypeVar("T")
# a constant spliced into the queries below (S608 flags every f-string query; no value ever is)
VOLUME_COLUMNS = "name, driver, size, created_at, options, details, restoring_from, adopted"

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    size INTEGER,
    created_at TEXT NOT NULL,
    options TEXT NOT NULL,
    details TEXT NOT NULL,
    restoring_from TEXT,
    adopted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS mount_refs (
    volume TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
    ref_id TEXT NOT NULL,
    count INTEGER NOT NULL,
    extra_mountpoint TEXT,
    PRIMARY KEY (volume, ref_id)
);
CREATE TABLE IF NOT EXISTS snapshots (
    name TEXT PRIMARY KEY,
    volume TEXT NOT NULL REFERENCES volumes(name),
    created_at TEXT NOT NULL,
    details TEXT NOT NULL
);
-- schedules (app.schedule.records): the schedule, the volumes it takes, what its runs made
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_at TEXT NOT NULL,
    next_run TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_volumes (
    schedule TEXT NOT NULL REFERENCES schedules(name) ON DELETE CASCADE,
    volume TEXT NOT NULL REFERENCES volumes(name) ON DELETE CASCADE,
    PRIMARY KEY (schedule, volume)
);
CREATE TABLE IF NOT EXISTS schedule_items (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    schedule TEXT NOT NULL REFERENCES schedules(name) ON DELETE CASCADE,
    volume TEXT NOT NULL,
    made_at TEXT NOT NULL,
    pending INTEGER NOT NULL,
    PRIMARY KEY (kind, volume, name)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    record TEXT NOT NULL  -- the job as the control API shows it (app.jobs), JSON
);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs(state, finished);
"""


@dataclass
class VolumeRecord:
    name: str
    driver: str
    size: int | None
    created_at: str
    options: dict[str, str] = field(default_factory=dict)
    #: the driver's own record of the volume, which only the driver reads
    details: dict[str, Any] = field(default_factory=dict)
    #: the service's state: the backup URL while a restore fills the volume
    restoring_from: str | None = None
    #: the storage existed before convoy created the volume: a failed restore keeps it
    adopted: bool = False

    def ref(self) -> VolumeRef:
        return VolumeRef(self.name, self.size, self.details)


@dataclass(frozen=True)
class MountRef:
    ref_id: str
    count: int
    extra_mountpoint: str | None  # where `convoy mount --mountpoint` also put it


class Catalog:
    """Thread-safe access to the catalog database; each change is durable when its call returns."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # the writing connection
        self._changes: GroupCommit[Callable[[sqlite3.Connection], Any], Any] = GroupCommit(self._commit_changes)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._migrate()
        # Reads have a connection of their own: in WAL mode they see the last
        # commit without waiting for the one under way (a flush of the disk).
        self._read_lock = threading.Lock()
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._reader.execute("PRAGMA query_only=ON")

    def _migrate(self) -> None:
        """Catalogs written before the service's state had columns kept it in the driver's details."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(volumes)")}
        if "restoring_from" in columns:
            return

        def move_state(db: sqlite3.Connection) -> None:
            db.execute("ALTER TABLE volumes ADD COLUMN restoring_from TEXT")
            db.execute("ALTER TABLE volumes ADD COLUMN adopted INTEGER NOT NULL DEFAULT 0")
            for name, details_json in db.execute("SELECT name, details FROM volumes").fetchall():
                details = json.loads(details_json)
                restoring_from = details.pop("restore_pending", None)
                adopted = bool(details.pop("adopted", False))
                db.execute(
                    "UPDATE volumes SET details=?, restoring_from=?, adopted=? WHERE name=?",
                    (json.dumps(details), restoring_from, int(adopted), name),
                )

        self._tx(move_state)

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()

    def _rows(self, query: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Every row of a read (fetched whole: a statement left open would pin an old snapshot)."""
        with self._read_lock:
            return self._reader.execute(query, args).fetchall()

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` as one all-or-nothing change; returns its result once committed durably."""
        result: T = self._changes.submit(fn)
        return result

    def _commit_changes(self, changes: list[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        """One transaction for the queued changes, each in a savepoint: a failing change is undone
        alone (its caller gets the error), the others commit together."""
        outcomes: list[Any] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for change in changes:
                    self._db.execute("SAVEPOINT change")
                    try:
                        outcomes.append(change(self._db))
                    except Exception as err:  # noqa: BLE001 - its caller gets it, the others commit
                        self._db.execute("ROLLBACK TO change")
                        outcomes.append(err)
                    self._db.execute("RELEASE change")
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return outcomes

    # volumes

    def get(self, name: str) -> VolumeRecord | None:
        rows = self._rows(f"SELECT {VOLUME_COLUMNS} FROM volumes WHERE name=?", (name,))  # noqa: S608
        return _record(rows[0]) if rows else None

    def all(self) -> list[VolumeRecord]:
        return [_record(row) for row in self._rows(f"SELECT {VOLUME_COLUMNS} FROM volumes ORDER BY name")]  # noqa: S608

    def put(self, record: VolumeRecord) -> None:
        """Insert or replace a volume record (its mount references stay)."""
        self._tx(
            lambda db: db.execute(
                f"INSERT INTO volumes({VOLUME_COLUMNS}) VALUES (?,?,?,?,?,?,?,?) "  # noqa: S608
                "ON CONFLICT(name) DO UPDATE SET driver=excluded.driver, size=excluded.size, "
                "created_at=excluded.created_at, options=excluded.options, details=excluded.details, "
                "restoring_from=excluded.restoring_from, adopted=excluded.adopted",
                (
                    record.name,
                    record.driver,
                    record.size,
                    record.created_at,
                    json.dumps(record.options),
                    json.dumps(record.details),
                    record.restoring_from,
                    int(record.adopted),
                ),
            )
        )

    def remove(self, name: str) -> None:
        self._tx(lambda db: db.execute("DELETE FROM volumes WHERE name=?", (name,)))

    # snapshots

    def put_snapshot(self, record: SnapshotRecord) -> None:
        self._tx(
            lambda db: db.execute(
                "INSERT INTO snapshots(name, volume, created_at, details) VALUES (?,?,?,?)",
                (record.name, record.volume, record.created_at, json.dumps(record.details)),
            )
        )

    def set_snapshot_details(self, name: str, details: dict[str, Any]) -> None:
        self._tx(lambda db: db.execute("UPDATE snapshots SET details=? WHERE name=?", (json.dumps(details), name)))

    def get_snapshot(self, name: str) -> SnapshotRecord | None:
        rows = self._rows("SELECT name, volume, created_at, details FROM snapshots WHERE name=?", (name,))
        return SnapshotRecord(rows[0][0], rows[0][1], rows[0][2], json.loads(rows[0][3])) if rows else None

    def snapshots(self, volume: str | None = None) -> list[SnapshotRecord]:
        query = "SELECT name, volume, created_at, details FROM snapshots"
        args: tuple[str, ...] = ()
        if volume is not None:
            query, args = query + " WHERE volume=?", (volume,)
        rows = self._rows(query + " ORDER BY created_at, name", args)
        return [SnapshotRecord(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def remove_snapshot(self, name: str) -> None:
        self._tx(lambda db: db.execute("DELETE FROM snapshots WHERE name=?", (name,)))

    # jobs: their history, written when each starts and ends (app.jobs)

    def put_job(self, job_id: str, state: str, started: float, finished: float | None, record: dict[str, Any], keep: int) -> None:
        """Insert or replace a job; of the finished ones, only the newest `keep` stay."""

        def put(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO jobs(id, state, started, finished, record) VALUES (?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET state=excluded.state, finished=excluded.finished, record=excluded.record",
                (job_id, state, started, finished, json.dumps(record)),
            )
            if finished is not None:
                db.execute(
                    "DELETE FROM jobs WHERE state != 'running' AND id NOT IN "
                    "(SELECT id FROM jobs WHERE state != 'running' ORDER BY finished DESC LIMIT ?)",
                    (keep,),
                )

        self._tx(put)

    def job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT record FROM jobs WHERE id=?", (job_id,))
        return dict(json.loads(rows[0][0])) if rows else None

    def jobs(self) -> list[dict[str, Any]]:
        """Every job kept, oldest first."""
        return [json.loads(row[0]) for row in self._rows("SELECT record FROM jobs ORDER BY started, id")]

    def end_running_jobs(self, end: Callable[[dict[str, Any]], dict[str, Any]], finished: float) -> list[str]:
        """Replace each job still recorded as running by `end(record)`; their ids."""

        def mark(db: sqlite3.Connection) -> list[str]:
            ended = []
            for job_id, record in db.execute("SELECT id, record FROM jobs WHERE state='running'").fetchall():
                new = end(json.loads(record))
                db.execute(
                    "UPDATE jobs SET state=?, finished=?, record=? WHERE id=?", (new["state"], finished, json.dumps(new), job_id)
                )
                ended.append(job_id)
            return ended

        return self._tx(mark)

    # mount references

    def refs(self, name: str) -> list[MountRef]:
        rows = self._rows("SELECT ref_id, count, extra_mountpoint FROM mount_refs WHERE volume=? ORDER BY ref_id", (name,))
        return [MountRef(*row) for row in rows]

    def add_ref(self, name: str, ref_id: str, extra_mountpoint: str | None = None) -> None:
        self._tx(
            lambda db: db.execute(
                "INSERT INTO mount_refs(volume, ref_id, count, extra_mountpoint) VALUES (?,?,1,?) "
                "ON CONFLICT(volume, ref_id) DO UPDATE SET count=count+1",
                (name, ref_id, extra_mountpoint),
            )
        )

    def release_ref(self, name: str, ref_id: str, all_counts: bool = False) -> bool:
        """Drop one count of a reference (or all of it); False when it was unknown."""

        def release(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT count FROM mount_refs WHERE volume=? AND ref_id=?", (name, ref_id)).fetchone()
            if row is None:
                return False
            if row[0] <= 1 or all_counts:
                db.execute("DELETE FROM mount_refs WHERE volume=? AND ref_id=?", (name, ref_id))
            else:
                db.execute("UPDATE mount_refs SET count=count-1 WHERE volume=? AND ref_id=?", (name, ref_id))
            return True

        return self._tx(release)

    # tables other modules own (app.schedule.records): a durable change, and a read

    def change(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._tx(fn)

    def read(self, query: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return self._rows(query, args)

    # metrics

    def volume_counts(self) -> list[tuple[str, int, int, int]]:
        """(driver, volumes, volumes mounted, mount references held) for each driver with volumes: one query,
        read at every metrics scrape."""
        return self._rows(
            "SELECT v.driver, COUNT(*), COUNT(r.volume), COALESCE(SUM(r.refs), 0) FROM volumes v "
            "LEFT JOIN (SELECT volume, SUM(count) AS refs FROM mount_refs GROUP BY volume) r ON r.volume = v.name "
            "GROUP BY v.driver"
        )


@dataclass
class SnapshotRecord:
    name: str
    volume: str
    created_at: str
    details: dict[str, Any] = field(default_factory=dict)

    def ref(self, volume: VolumeRecord) -> SnapshotRef:
        return SnapshotRef(volume.ref(), self.name, self.details)


def _record(row: tuple[Any, ...]) -> VolumeRecord:
    name, driver, size, created_at, options, details, restoring_from, adopted = row
    return VolumeRecord(
        name, driver, size, created_at, json.loads(options), json.loads(details), restoring_from, bool(adopted)
    )
