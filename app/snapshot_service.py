"""Snapshots of volumes: point-in-time copies kept on this host, the source of backups."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from app.catalog import SnapshotRecord, VolumeRecord
from app.errors import Conflict, InvalidInput, NotFound, SnapshotFailed
from app.json_types import JSONObject
from app.names import check_name
from app.service import VolumeService
from app.storage.driver import SnapshotKind, StorageDriver

log = logging.getLogger(__name__)


def _timestamp() -> str:
    # milliseconds: snapshots of one volume are ordered by it
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SnapshotService:
    def __init__(self, volumes: VolumeService):
        self.volumes = volumes
        self.catalog = volumes.catalog
        self._in_use: dict[str, int] = {}  # snapshot -> readers (running backups)
        self._in_use_lock = threading.Lock()

    def view(self, record: SnapshotRecord) -> JSONObject:
        return {
            "name": record.name,
            "volume": record.volume,
            "created_at": record.created_at,
            "method": record.details.get("method"),
            "details": record.details,
        }

    def require(self, name: str) -> SnapshotRecord:
        check_name("snapshot", name)
        record = self.catalog.get_snapshot(name)
        if record is None:
            raise NotFound(f"snapshot {name} does not exist: `convoy snapshot list` shows the snapshots")
        return record

    def create(self, volume: str, name: str | None = None) -> JSONObject:
        name = check_name("snapshot", name) if name else "snapshot-" + secrets.token_hex(8)
        with self.volumes.volume_lock(volume):
            record = self.volumes.require(volume)
            self.volumes.refuse_while_restoring(record, "snapshot")  # its data is partial
            if self.catalog.get_snapshot(name) is not None:
                raise Conflict(f"snapshot {name} already exists; pick another name")
            driver = self.volumes.driver(record.driver)
            if driver.capabilities.snapshots is SnapshotKind.NONE:
                raise InvalidInput(f"volume {volume} is on the {record.driver} back-end, which takes no snapshots")
            details = driver.create_snapshot(record.ref(), name)
            snapshot = SnapshotRecord(name, volume, _timestamp(), details)
            self.catalog.put_snapshot(snapshot)  # before it completes: inspect shows its progress meanwhile
        method = details.get("method")  # how the back-end took it, where it has a choice (vfs: reflink or copy)
        log.info("snapshot %s of %s taken%s", name, volume, f" ({method})" if method else "")
        return self.view(self._completed(snapshot, record, driver))

    def _completed(self, snapshot: SnapshotRecord, volume: VolumeRecord, driver: StorageDriver) -> SnapshotRecord:
        """The snapshot once its back-end has completed it (a cloud snapshot copies in the background).

        Waits without the volume's lock, so the volume stays usable; a snapshot the back-end gave up on is
        removed, one still going on past the driver's deadline stays in the catalog for a later wait."""
        try:
            details = driver.finish_snapshot(snapshot.ref(volume))
        except SnapshotFailed:
            with self.volumes.volume_lock(snapshot.volume):
                if self.catalog.get_snapshot(snapshot.name) is not None:
                    driver.delete_snapshot(snapshot.ref(volume))
                    self.catalog.remove_snapshot(snapshot.name)
            raise
        if details == snapshot.details:
            return snapshot
        with self.volumes.volume_lock(snapshot.volume):
            if self.catalog.get_snapshot(snapshot.name) is None:
                raise NotFound(f"snapshot {snapshot.name} was deleted while it was being completed")
            snapshot = replace(snapshot, details=details)
            self.catalog.set_snapshot_details(snapshot.name, details)
        log.info("snapshot %s of %s completed", snapshot.name, snapshot.volume)
        return snapshot

    def delete(self, name: str) -> None:
        snapshot = self.require(name)
        with self.volumes.volume_lock(snapshot.volume):
            with self._in_use_lock:
                if self._in_use.get(name):
                    raise Conflict(f"snapshot {name} is being backed up; delete it when the backup has finished")
            record = self.volumes.require(snapshot.volume)
            self.volumes.driver(record.driver).delete_snapshot(snapshot.ref(record))
            self.catalog.remove_snapshot(name)
        log.info("snapshot %s of %s deleted", name, snapshot.volume)

    def get(self, name: str) -> JSONObject:
        """The snapshot, with its back-end's progress while it is still being completed."""
        snapshot = self.require(name)
        view = self.view(snapshot)
        volume = self.catalog.get(snapshot.volume)
        if volume is not None:
            view.update(self.volumes.started_driver(volume.driver).snapshot_progress(snapshot.ref(volume)))
        return view

    def list(self, volume: str | None = None) -> list[JSONObject]:
        if volume is not None:
            self.volumes.require(volume)
        return [self.view(record) for record in self.catalog.snapshots(volume)]

    @contextmanager
    def held(self, name: str, volume: str | None = None) -> Iterator[tuple[SnapshotRecord, VolumeRecord, StorageDriver]]:
        """Hold a snapshot for a backup: it cannot be deleted meanwhile.

        `volume`: the snapshot must be of this volume (NotFound otherwise).
        """
        snapshot = self.require(name)
        if volume is not None and snapshot.volume != volume:
            raise NotFound(f"snapshot {name} is of volume {snapshot.volume}, not {volume}")
        with self._in_use_lock:
            self._in_use[name] = self._in_use.get(name, 0) + 1
        try:
            record = self.volumes.require(snapshot.volume)
            driver = self.volumes.driver(record.driver)
            yield self._completed(snapshot, record, driver), record, driver
        finally:
            with self._in_use_lock:
                self._in_use[name] -= 1

    @contextmanager
    def reading_tree(self, name: str, volume: str | None = None) -> Iterator[tuple[SnapshotRecord, Path]]:
        """A tree back-end's snapshot held and opened as a directory: (record, directory)."""
        with self.held(name, volume) as (snapshot, record, driver), driver.open_tree_snapshot(snapshot.ref(record)) as directory:
            yield snapshot, directory
