"""The persisted catalog: volumes and their mount references.

SQLite in WAL mode, because a volume record and its mount references change
together and must survive kill -9 and power loss consistently: one
transaction per change gives that, where a set of JSON files renamed one by
one could leave a reference without its volume. `synchronous=FULL` makes a
committed change durable before Docker hears "ok".
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    size INTEGER,
    created_at TEXT NOT NULL,
    options TEXT NOT NULL,
    details TEXT NOT NULL
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
"""


@dataclass
class VolumeRecord:
    name: str
    driver: str
    size: int | None
    created_at: str
    options: dict[str, str] = field(default_factory=dict)
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MountRef:
    ref_id: str
    count: int
    extra_mountpoint: str | None  # where `convoy mount --mountpoint` also put it


class Catalog:
    """Thread-safe access to the catalog database; one short transaction per call."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, fn):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    # volumes

    def get(self, name: str) -> VolumeRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT name, driver, size, created_at, options, details FROM volumes WHERE name=?", (name,)
            ).fetchone()
        return _record(row) if row else None

    def all(self) -> list[VolumeRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, driver, size, created_at, options, details FROM volumes ORDER BY name"
            ).fetchall()
        return [_record(row) for row in rows]

    def put(self, record: VolumeRecord) -> None:
        """Insert or replace a volume record (its mount references stay)."""
        self._tx(
            lambda db: db.execute(
                "INSERT INTO volumes(name, driver, size, created_at, options, details) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET driver=excluded.driver, size=excluded.size, "
                "created_at=excluded.created_at, options=excluded.options, details=excluded.details",
                (
                    record.name,
                    record.driver,
                    record.size,
                    record.created_at,
                    json.dumps(record.options),
                    json.dumps(record.details),
                ),
            )
        )

    def remove(self, name: str) -> None:
        self._tx(lambda db: db.execute("DELETE FROM volumes WHERE name=?", (name,)))

    # snapshots

    def put_snapshot(self, record: "SnapshotRecord") -> None:
        self._tx(
            lambda db: db.execute(
                "INSERT INTO snapshots(name, volume, created_at, details) VALUES (?,?,?,?)",
                (record.name, record.volume, record.created_at, json.dumps(record.details)),
            )
        )

    def get_snapshot(self, name: str) -> "SnapshotRecord | None":
        with self._lock:
            row = self._db.execute("SELECT name, volume, created_at, details FROM snapshots WHERE name=?", (name,)).fetchone()
        return SnapshotRecord(row[0], row[1], row[2], json.loads(row[3])) if row else None

    def snapshots(self, volume: str | None = None) -> list["SnapshotRecord"]:
        query = "SELECT name, volume, created_at, details FROM snapshots"
        args: tuple = ()
        if volume is not None:
            query, args = query + " WHERE volume=?", (volume,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created_at, name", args).fetchall()
        return [SnapshotRecord(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def remove_snapshot(self, name: str) -> None:
        self._tx(lambda db: db.execute("DELETE FROM snapshots WHERE name=?", (name,)))

    # mount references

    def refs(self, name: str) -> list[MountRef]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ref_id, count, extra_mountpoint FROM mount_refs WHERE volume=? ORDER BY ref_id", (name,)
            ).fetchall()
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

        def release(db):
            row = db.execute("SELECT count FROM mount_refs WHERE volume=? AND ref_id=?", (name, ref_id)).fetchone()
            if row is None:
                return False
            if row[0] <= 1 or all_counts:
                db.execute("DELETE FROM mount_refs WHERE volume=? AND ref_id=?", (name, ref_id))
            else:
                db.execute("UPDATE mount_refs SET count=count-1 WHERE volume=? AND ref_id=?", (name, ref_id))
            return True

        return self._tx(release)


@dataclass
class SnapshotRecord:
    name: str
    volume: str
    created_at: str
    details: dict = field(default_factory=dict)


def _record(row) -> VolumeRecord:
    name, driver, size, created_at, options, details = row
    return VolumeRecord(name, driver, size, created_at, json.loads(options), json.loads(details))
