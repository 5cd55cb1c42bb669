"""The volume service: the one place that decides whether something may happen now.

It owns the catalog, the per-volume locks and the mount references. The
Docker protocol adapter and the control API call it and hold no state.
Every method blocks (file systems, mounts, SQLite): adapters run them in
worker threads, never on the event loop.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from app import mounts
from app.catalog import Catalog, VolumeRecord
from app.errors import Conflict, InvalidInput, NotFound, Unavailable
from app.names import check_volume_name
from app.settings import Settings
from app.storage.driver import StorageDriver, VolumeSpec
from app.units import format_size, parse_size

log = logging.getLogger(__name__)

CLI_REF_PREFIX = "convoy-cli"  # mount references taken by `convoy mount`
RESTORE_REF = "convoy-restore"  # the mount reference a restore writes through
READY_TIMEOUT = 90.0  # seconds a mount waits for start-up recovery to finish
BASE_OPTIONS = {
    "size": "volume size, e.g. 10G",
    "driver": "back-end for this volume",
    "backup": "restore the new volume from this backup URL",
}


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class VolumeService:
    def __init__(self, settings: Settings, drivers: dict[str, StorageDriver], catalog: Catalog):
        self.settings = settings
        self.drivers = drivers
        self.catalog = catalog
        self.mount_root = settings.mount_root
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._ready = threading.Event()
        self._driver_errors: dict[str, str] = {}

    # start-up

    def start(self) -> None:
        """Slow start-up work; runs after the sockets listen. Mounts wait for it."""
        try:
            for name, driver in self.drivers.items():
                try:
                    driver.start()
                except Exception as err:  # keep serving the others; report on use
                    log.exception("driver %s failed to start", name)
                    self._driver_errors[name] = f"driver {name} failed to start: {err}"
            self.remove_interrupted_restores()
            self.reconcile_mounts()
        finally:
            self._ready.set()

    def reconcile_mounts(self) -> None:
        """Make the kernel's mounts match the persisted references (after kill -9 or reboot)."""
        self.mount_root.mkdir(parents=True, exist_ok=True)
        mounted = mounts.mounted_paths()
        wanted: set[str] = set()
        for record in self.catalog.all():
            target = self.mountpoint(record.name)
            refs = self.catalog.refs(record.name)
            if not refs:
                continue
            wanted.add(str(target))
            try:
                with self.volume_lock(record.name):
                    if str(target) not in mounted:
                        log.info("remounting %s: %d reference(s) survive a restart", record.name, len(refs))
                        self._mount_volume(record, target)
                    for ref in refs:
                        extra = ref.extra_mountpoint
                        if extra:
                            wanted.add(extra)
                            if extra not in mounted:
                                Path(extra).mkdir(parents=True, exist_ok=True)
                                mounts.bind_mount(target, extra)
            except Exception:
                log.exception("could not restore the mount of %s", record.name)
        root = str(self.mount_root).rstrip("/") + "/"
        for path in sorted(mounted, reverse=True):  # children before parents
            if path.startswith(root) and path not in wanted:
                log.info("unmounting leaked mount %s: no reference holds it", path)
                try:
                    mounts.unmount(path)
                except Exception:
                    log.exception("could not unmount leaked %s", path)

    def remove_interrupted_restores(self) -> None:
        """A restore killed half-way leaves a volume with partial data: remove it."""
        for record in self.catalog.all():
            url = record.details.get("restore_pending")
            if not url:
                continue
            log.warning("removing %s: its restore from %s was interrupted; run the restore again", record.name, url)
            try:
                mounts.unmount(self.mountpoint(record.name))
                # a directory that was adopted held the user's own (empty) directory: keep it
                adopted = record.details.get("adopted", False)
                self.driver(record.driver).delete_volume(record.name, record.details, keep_data=adopted)
                for ref in self.catalog.refs(record.name):
                    self.catalog.release_ref(record.name, ref.ref_id, all_counts=True)
                self.catalog.remove(record.name)
            except Exception:
                log.exception("could not remove the interrupted restore of %s", record.name)

    def _wait_ready(self) -> None:
        if not self._ready.wait(READY_TIMEOUT):
            raise Unavailable("convoy is still recovering mounts after a restart; try again in a minute")

    # helpers

    @contextmanager
    def volume_lock(self, name: str):
        with self._locks_guard:
            lock = self._locks[name]
        with lock:
            yield

    def mountpoint(self, name: str) -> Path:
        return self.mount_root / name

    def driver(self, name: str) -> StorageDriver:
        if name in self._driver_errors:
            raise Unavailable(self._driver_errors[name] + "; fix the driver options and restart convoy")
        try:
            return self.drivers[name]
        except KeyError:
            raise InvalidInput(
                f"driver {name!r} is not enabled: enabled are {', '.join(self.drivers)}; "
                f"start convoy with --drivers {name} (DRIVER={name} for the plugin)"
            ) from None

    def _lookup(self, name: str) -> VolumeRecord | None:
        """The catalog's record, or a volume another host recorded on shared storage (adopted)."""
        record = self.catalog.get(name)
        if record is not None:
            return record
        for driver_name, driver in self.drivers.items():
            if driver_name in self._driver_errors:
                continue
            for shared in driver.shared_volumes():
                if shared.name == name:
                    record = VolumeRecord(name, driver_name, shared.size, shared.created_at, {}, shared.details)
                    self.catalog.put(record)
                    return record
        return None

    def require(self, name: str) -> VolumeRecord:
        check_volume_name(name)
        record = self._lookup(name)
        if record is None:
            raise NotFound(
                f"volume {name} does not exist: create it with `docker volume create -d convoy {name}` "
                f"or `convoy create {name}`"
            )
        return record

    # views

    def view(self, record: VolumeRecord, mounted: set[str] | None = None) -> dict:
        """What Get, inspect and list show of a volume."""
        target = self.mountpoint(record.name)
        refs = self.catalog.refs(record.name)
        driver = self.drivers.get(record.driver)
        backend = driver.status(record.name, record.details) if driver else dict(record.details)
        return {
            "name": record.name,
            "driver": record.driver,
            "size": record.size,
            "size_human": format_size(record.size),
            "created_at": record.created_at,
            "mountpoint": str(target),
            "mounted": mounts.is_mounted(target, mounted),
            "mount_refs": sum(ref.count for ref in refs),
            "mount_ids": [ref.ref_id for ref in refs],
            "options": record.options,
            "backend": backend,
        }

    def get(self, name: str) -> dict:
        return self.view(self.require(name))

    def list(self) -> list[dict]:
        mounted = mounts.mounted_paths()
        records = {record.name: record for record in self.catalog.all()}
        for driver_name, driver in self.drivers.items():
            if driver_name in self._driver_errors or not self._ready.is_set():
                continue  # shared storage may be slow or absent: list must answer at once
            for shared in driver.shared_volumes():
                records.setdefault(
                    shared.name,
                    VolumeRecord(shared.name, driver_name, shared.size, shared.created_at, {}, shared.details),
                )
        return [self.view(records[name], mounted) for name in sorted(records)]

    def valid_options(self, driver: str) -> dict[str, str]:
        extra = self.drivers[driver].volume_options if driver in self.drivers else {}
        return {**BASE_OPTIONS, **extra}

    # changes

    def parse_create_options(self, name: str, options: dict | None) -> tuple[str, int | None, dict[str, str]]:
        """Validate a create request: (driver, size in bytes, the remaining options)."""
        check_volume_name(name)
        options = {str(k): str(v) for k, v in (options or {}).items()}
        driver_name = options.pop("driver", "") or self.settings.default_driver
        self.driver(driver_name)
        valid = self.valid_options(driver_name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            listing = "; ".join(f"{key} ({text})" for key, text in sorted(valid.items()))
            raise InvalidInput(f"unknown option {', '.join(unknown)} for driver {driver_name}: valid options are {listing}")
        size = parse_size(options.pop("size")) if "size" in options else self.settings.default_size
        return driver_name, size, options

    def create(self, name: str, options: dict[str, str] | None = None, exist_ok: bool = True) -> dict:
        """Create a volume; Docker's retries and Swarm's repeats make it idempotent."""
        driver_name, size, options = self.parse_create_options(name, options)
        if "backup" in options:
            raise InvalidInput("restoring a backup is a job: use the backup service (convoy create NAME --backup URL)")
        with self.volume_lock(name):
            existing = self._lookup(name)
            if existing is not None:
                if not exist_ok:
                    raise Conflict(f"volume {name} already exists; pick another name or delete it first")
                return self.view(existing)
            return self.view(self._create_locked(name, driver_name, size, options, {}))

    def _create_locked(self, name, driver_name, size, options, extra_details) -> VolumeRecord:
        created_at = now_rfc3339()
        details = self.driver(driver_name).create_volume(VolumeSpec(name, size, created_at, options))
        record = VolumeRecord(name, driver_name, size, created_at, options, {**details, **extra_details})
        self.catalog.put(record)
        log.info("created volume %s (driver %s, size %s)", name, driver_name, format_size(size))
        return record

    def create_for_restore(self, name: str, driver_name: str, size: int | None, options: dict, url: str) -> VolumeRecord:
        """A new volume marked as being restored: Docker cannot mount it, a crash removes it."""
        with self.volume_lock(name):
            if self._lookup(name) is not None:
                raise Conflict(f"volume {name} already exists; restore into a new name")
            return self._create_locked(name, driver_name, size, {**options, "backup": url}, {"restore_pending": url})

    def finish_restore(self, name: str) -> None:
        with self.volume_lock(name):
            record = self.require(name)
            record.details.pop("restore_pending", None)
            self.catalog.put(record)

    def delete(self, name: str, keep_data: bool) -> None:
        """Delete a volume: its data too unless `keep_data` (a reference-only delete)."""
        self._wait_ready()
        with self.volume_lock(name):
            record = self.require(name)
            refs = self.catalog.refs(name)
            if refs:
                raise Conflict(
                    f"volume {name} is mounted ({len(refs)} reference(s): {', '.join(r.ref_id[:12] for r in refs)}); "
                    "stop the containers that use it, or `convoy umount` it, then delete it"
                )
            snapshots = [snapshot.name for snapshot in self.catalog.snapshots(name)]
            if snapshots:
                raise Conflict(
                    f"volume {name} has snapshots ({', '.join(snapshots)}); "
                    "delete them first with `convoy snapshot delete`"
                )
            self.driver(record.driver).delete_volume(name, record.details, keep_data)
            self.catalog.remove(name)
            log.info("deleted volume %s%s", name, " (reference only, data kept)" if keep_data else "")

    def delete_from_docker(self, name: str) -> None:
        """Docker's Remove: reference only where the data lives outside this host."""
        if self.settings.ignore_docker_delete:
            log.info("ignoring Docker's remove of %s (--ignore-docker-delete)", name)
            return
        check_volume_name(name)
        record = self._lookup(name)
        if record is None:
            return  # already gone: Docker retries, and Remove must be idempotent
        driver = self.driver(record.driver)
        self.delete(name, keep_data=driver.data_outside_host)

    def mount(self, name: str, ref_id: str, extra_mountpoint: str | None = None, create: bool = False) -> str:
        """Take one reference; the first one mounts the volume."""
        self._wait_ready()
        check_volume_name(name)
        if create and self.settings.create_on_docker_mount and self._lookup(name) is None:
            self.create(name)
        with self.volume_lock(name):
            record = self.require(name)
            if record.details.get("restore_pending") and ref_id != RESTORE_REF:
                raise Conflict(
                    f"volume {name} is still being restored from {record.details['restore_pending']}; "
                    "mount it when the restore has finished"
                )
            target = self.mountpoint(name)
            mounted = mounts.mounted_paths()
            if not mounts.is_mounted(target, mounted):
                self._mount_volume(record, target)
            if extra_mountpoint:
                extra = Path(extra_mountpoint).absolute()
                if not mounts.is_mounted(extra, mounted):
                    extra.mkdir(parents=True, exist_ok=True)
                    mounts.bind_mount(target, extra)
                extra_mountpoint = str(extra)
            self.catalog.add_ref(name, ref_id, extra_mountpoint)
            return extra_mountpoint or str(target)

    def _mount_volume(self, record: VolumeRecord, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        self.driver(record.driver).mount(record.name, record.details, target)

    def unmount(self, name: str, ref_id: str) -> None:
        """Release one reference; the last one unmounts. An unknown ID is harmless."""
        self._wait_ready()
        check_volume_name(name)
        with self.volume_lock(name):
            record = self.catalog.get(name)
            if record is None:
                return
            refs = {ref.ref_id: ref for ref in self.catalog.refs(name)}
            ref = refs.get(ref_id)
            if ref is None:
                log.info("unmount of %s with unknown ID %s: nothing to release", name, ref_id[:12])
                return
            self._release(record, ref.ref_id, ref.extra_mountpoint, refs, all_counts=False)

    def unmount_cli(self, name: str) -> None:
        """`convoy umount`: release every reference the CLI took."""
        self._wait_ready()
        with self.volume_lock(name):
            record = self.require(name)
            refs = {ref.ref_id: ref for ref in self.catalog.refs(name)}
            cli_refs = [ref for ref in refs.values() if ref.ref_id.startswith(CLI_REF_PREFIX)]
            if not cli_refs:
                raise Conflict(f"volume {name} was not mounted with `convoy mount`; nothing to unmount")
            for ref in cli_refs:
                self._release(record, ref.ref_id, ref.extra_mountpoint, refs, all_counts=True)
                refs.pop(ref.ref_id)

    def _release(self, record, ref_id, extra_mountpoint, refs, all_counts) -> None:
        # Unmount before forgetting the reference: if the unmount fails, the
        # reference (and so the caller's retry) stays valid.
        total = sum(ref.count for ref in refs.values())
        releasing = refs[ref_id].count if all_counts else 1
        if extra_mountpoint and (all_counts or refs[ref_id].count == 1):
            mounts.unmount(extra_mountpoint)
        if total - releasing == 0:
            self.driver(record.driver).unmount(record.name, record.details, self.mountpoint(record.name))
        self.catalog.release_ref(record.name, ref_id, all_counts=all_counts)

    def path(self, name: str) -> str:
        record = self.require(name)
        target = self.mountpoint(record.name)
        return str(target) if mounts.is_mounted(target) else ""

    def info(self) -> dict:
        return {
            "root": str(self.settings.root),
            "mount_root": str(self.mount_root),
            "default_driver": self.settings.default_driver,
            "drivers": {
                name: {
                    "scope": driver.scope,
                    "data_outside_host": driver.data_outside_host,
                    "options": {k: v for k, v in driver.options.items()},
                    "volume_options": self.valid_options(name),
                    "error": self._driver_errors.get(name),
                }
                for name, driver in self.drivers.items()
            },
            "create_on_docker_mount": self.settings.create_on_docker_mount,
            "ignore_docker_delete": self.settings.ignore_docker_delete,
            "ready": self._ready.is_set(),
            "volumes": len(self.catalog.all()),
        }
