"""The volume service: the one place that decides whether something may happen now.

It owns the catalog, the per-volume locks and the mount references. The
Docker protocol adapter and the control API call it and hold no state.
Every method blocks (file systems, mounts, SQLite): adapters run them in
worker threads, never on the event loop.
"""

from __future__ import annotations

import builtins
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from app import mounts
from app.catalog import Catalog, MountRef, VolumeRecord
from app.errors import Conflict, InvalidInput, NotFound, Unavailable
from app.fs import image_tree
from app.json_types import JSONObject
from app.names import check_volume_name
from app.private_dirs import make_private
from app.settings import Settings
from app.shared_volumes import SharedVolumeCache
from app.storage.driver import SharedVolume, StorageDriver, VolumeSpec
from app.units import MAX_SIZE, format_size, parse_size
from app.validation import validate

log = logging.getLogger(__name__)

CLI_REF_PREFIX = "convoy-cli"  # mount references taken by `convoy mount`
RESTORE_REF = "convoy-restore"  # the mount reference a restore writes through
RESTORE_SCRATCH = "restore-scratch"  # below the root: where an image backup is read as files
READY_TIMEOUT = 90.0  # seconds a mount waits for start-up recovery to finish
BASE_OPTIONS = {
    "size": "volume size, e.g. 10G",
    "driver": "back-end for this volume",
    "backup": "restore the new volume from this backup URL",
    "schedule": "attach the new volume to this schedule (convoy schedule create)",
}


class ScheduleAttacher(Protocol):
    """`-o schedule=NAME` at create (app.schedule.service): checked before the volume is made, attached after."""

    def check_attach(self, name: str, driver: str) -> None: ...

    def attach(self, name: str, volume: str) -> None: ...


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class VolumeService:
    def __init__(self, settings: Settings, drivers: dict[str, StorageDriver], catalog: Catalog):
        self.settings = settings
        self.drivers = drivers
        self.catalog = catalog
        self.mount_root = settings.mount_root
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        self._ready = threading.Event()
        self._drivers_started = threading.Event()  # before it, a driver may not know where its storage is
        self._driver_errors: dict[str, str] = {}
        self.shared = SharedVolumeCache(self._started_drivers, settings.shared_refresh)
        self.schedules: ScheduleAttacher | None = None  # set by the server once the schedule service exists

    def _started_drivers(self) -> dict[str, StorageDriver]:
        if not self._ready.is_set():
            return {}  # shared storage is read once the drivers have started
        return {name: driver for name, driver in self.drivers.items() if name not in self._driver_errors}

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
            self._drivers_started.set()
            image_tree.clean_scratch(self.settings.root / RESTORE_SCRATCH)
            self.remove_interrupted_restores()
            self.reconcile_mounts()
        finally:
            self._drivers_started.set()
            self._ready.set()
        self.shared.start()

    def reconcile_mounts(self) -> None:
        """Make the kernel's mounts match the persisted references (after kill -9 or reboot)."""
        make_private(self.mount_root)
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
        self._release_unused()

    def _release_unused(self) -> None:
        """What no reference holds any more (a block volume's attachment) is released."""
        for record in self.catalog.all():
            if record.driver in self._driver_errors or record.driver not in self.drivers:
                continue
            try:
                with self.volume_lock(record.name):
                    self.drivers[record.driver].recover(record.ref(), in_use=bool(self.catalog.refs(record.name)))
            except Exception:
                log.exception("could not release what %s held before the restart", record.name)

    def remove_interrupted_restores(self) -> None:
        """A restore killed half-way leaves a volume with partial data: remove it."""
        for record in self.catalog.all():
            url = record.restoring_from
            if not url:
                continue
            log.warning("removing %s: its restore from %s was interrupted; run the restore again", record.name, url)
            try:
                with self.volume_lock(record.name):
                    self._remove_restored(record)
            except Exception:
                log.exception("could not remove the interrupted restore of %s", record.name)

    def remove_failed_restore(self, name: str) -> None:
        """Remove a volume whose restore failed or was cancelled (its job's clean-up)."""
        with self.volume_lock(name):
            record = self.catalog.get(name)
            if record is not None and record.restoring_from:
                self._remove_restored(record)

    def _remove_restored(self, record: VolumeRecord) -> None:
        """Everything of a half-restored volume, children first so no step trips over another."""
        mounts.unmount(self.mountpoint(record.name))
        driver = self.driver(record.driver)
        # Snapshots cannot be taken of a volume being restored, but an older
        # version allowed it: they would keep the record alive forever.
        for snapshot in self.catalog.snapshots(record.name):
            driver.delete_snapshot(snapshot.ref(record))
            self.catalog.remove_snapshot(snapshot.name)
        for ref in self.catalog.refs(record.name):
            self.catalog.release_ref(record.name, ref.ref_id, all_counts=True)
        # a directory that was adopted held the user's own (empty) directory: keep it
        driver.delete_volume(record.ref(), keep_data=record.adopted)
        self.catalog.remove(record.name)
        self.shared.forget(record.name)
        log.info("removed %s, whose restore did not finish", record.name)

    def refuse_while_restoring(self, record: VolumeRecord, action: str) -> None:
        """A volume being restored holds partial data: nothing but the restore may use it."""
        url = record.restoring_from
        if url:
            raise Conflict(
                f"volume {record.name} is still being restored from {url}; {action} it when the restore has "
                "finished (`convoy job list` shows it), or cancel the restore, which removes the volume"
            )

    def wait_started(self) -> None:
        """Until start-up recovery has run (however long it takes): work that needs the volumes waits here."""
        self._ready.wait()

    def _wait_ready(self) -> None:
        if not self._ready.wait(READY_TIMEOUT):
            raise Unavailable("convoy is still recovering mounts after a restart; try again in a minute")

    # helpers

    @contextmanager
    def volume_lock(self, name: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks[name]
        with lock:
            yield

    def mountpoint(self, name: str) -> Path:
        return self.mount_root / check_volume_name(name)  # a name is one path component, always

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

    def started_driver(self, name: str) -> StorageDriver:
        """The driver once the back-ends have started (waits for them): one that talks to its storage."""
        if not self._drivers_started.wait(READY_TIMEOUT):
            raise Unavailable("convoy's back-ends are still starting; try again in a minute")
        return self.driver(name)

    def _lookup(self, name: str) -> VolumeRecord | None:
        """The catalog's record, or a volume another host recorded on shared storage (adopted)."""
        record = self.catalog.get(name)
        if record is not None:
            return record
        found = self.shared.find(name)
        if found is None:
            return None
        record = _shared_record(*found)
        self.catalog.put(record)
        return record

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

    def view(self, record: VolumeRecord, mounted: set[str] | None = None) -> JSONObject:
        """What Get, inspect and list show of a volume."""
        target = self.mountpoint(record.name)
        refs = self.catalog.refs(record.name)
        driver = self.drivers.get(record.driver)
        backend = driver.status(record.ref()) if driver else dict(record.details)
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
            "restoring_from": record.restoring_from,
            "backend": backend,
        }

    def get(self, name: str) -> JSONObject:
        return self.view(self.require(name))

    def list(self) -> list[JSONObject]:
        mounted = mounts.mounted_paths()
        records = {record.name: record for record in self.catalog.all()}
        for driver_name, shared in self.shared.all():  # as last read: List never waits on shared storage
            records.setdefault(shared.name, _shared_record(driver_name, shared))
        return [self.view(records[name], mounted) for name in sorted(records)]

    def valid_options(self, driver: str) -> dict[str, str]:
        extra = self.drivers[driver].volume_options if driver in self.drivers else {}
        return {**BASE_OPTIONS, **extra}

    # changes

    def parse_create_options(self, name: str, options: dict[str, str] | None) -> tuple[str, int | None, dict[str, str]]:
        """Validate a create request: (driver, size in bytes, the remaining options)."""
        check_volume_name(name)
        # Docker's Opts is map[string]string: anything else is refused, never coerced
        options = dict(validate(dict[str, str], options or {}, what="volume options"))
        driver_name = options.pop("driver", "") or self.settings.default_driver
        self.driver(driver_name)
        valid = self.valid_options(driver_name)
        unknown = sorted(set(options) - set(valid))
        if unknown:
            listing = "; ".join(f"{key} ({text})" for key, text in sorted(valid.items()))
            raise InvalidInput(f"unknown option {', '.join(unknown)} for driver {driver_name}: valid options are {listing}")
        size = parse_size(options.pop("size")) if "size" in options else self.settings.default_size
        return driver_name, size, options

    def create(self, name: str, options: dict[str, str] | None = None, exist_ok: bool = True) -> JSONObject:
        """Create a volume; Docker's retries and Swarm's repeats make it idempotent."""
        driver_name, size, options = self.parse_create_options(name, options)
        if "backup" in options:
            raise InvalidInput("restoring a backup is a job: use the backup service (convoy create NAME --backup URL)")
        schedule = options.pop("schedule", None)
        if schedule is not None:
            self._schedule_attacher().check_attach(schedule, driver_name)
        with self.volume_lock(name):
            existing = self._lookup(name)
            if existing is not None:
                if not exist_ok:
                    raise Conflict(f"volume {name} already exists; pick another name or delete it first")
                created = existing
            else:
                created = self._create_locked(name, driver_name, size, options)
        if schedule is not None:
            self._schedule_attacher().attach(schedule, name)
        return self.view(created)

    def _schedule_attacher(self) -> ScheduleAttacher:
        if self.schedules is None:
            raise Unavailable("schedules are not available in this process; create the volume through the daemon")
        return self.schedules

    def _create_locked(
        self, name: str, driver_name: str, size: int | None, options: dict[str, str], restoring_from: str | None = None
    ) -> VolumeRecord:
        if size is not None:
            _check_size(size)
        driver = self.started_driver(driver_name)
        created_at = now_rfc3339()
        created = driver.create_volume(VolumeSpec(name, size, created_at, options))
        record = VolumeRecord(
            name, driver_name, created.size or size, created_at, options, created.details, restoring_from, created.adopted
        )
        try:
            self.catalog.put(record)
        except BaseException:
            # undo the driver's work: a name listed but not in the catalog could never be used or removed
            try:
                driver.delete_volume(record.ref(), keep_data=created.adopted)
            except Exception:
                log.exception("could not undo the storage of %s after its create failed", name)
            raise
        log.info("created volume %s (driver %s, size %s)", name, driver_name, format_size(record.size))
        return record

    def create_for_restore(
        self, name: str, driver_name: str, size: int | None, options: dict[str, str], url: str
    ) -> VolumeRecord:
        """A new volume marked as being restored: Docker cannot mount it, a crash removes it."""
        with self.volume_lock(name):
            if self._lookup(name) is not None:
                raise Conflict(f"volume {name} already exists; restore into a new name")
            return self._create_locked(name, driver_name, size, {**options, "backup": url}, restoring_from=url)

    def finish_restore(self, name: str, details: dict[str, Any] | None = None) -> None:
        """The restore filled the volume: it is usable now (with the driver's new details, if any)."""
        with self.volume_lock(name):
            record = self.require(name)
            record.restoring_from = None
            if details is not None:
                record.details = details
            self.catalog.put(record)

    def delete(self, name: str, keep_data: bool) -> None:
        """Delete a volume: its data too unless `keep_data` (a reference-only delete)."""
        self._wait_ready()
        with self.volume_lock(name):
            record = self.require(name)
            self.refuse_while_restoring(record, "delete")
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
                    "delete them first with `convoy snapshot delete`, or all of them with `convoy delete --snapshots`"
                )
            self.driver(record.driver).delete_volume(record.ref(), keep_data)
            self.catalog.remove(name)
            self.shared.forget(name)
            log.info("deleted volume %s%s", name, " (reference only, data kept)" if keep_data else "")

    def resize(self, name: str, size: str) -> JSONObject:
        """`convoy resize NAME SIZE`: grow a volume and its file system, online when it is mounted."""
        self._wait_ready()
        new_size = _check_size(parse_size(size))
        with self.volume_lock(name):
            record = self.require(name)
            self.refuse_while_restoring(record, "resize")
            driver = self.driver(record.driver)
            if not driver.capabilities.resize:
                raise InvalidInput(
                    f"volume {name} is on the {record.driver} back-end, which cannot resize volumes "
                    f"(its size is only recorded); an image volume can: `convoy create NAME --driver image`"
                )
            resized = driver.resize(record.ref(), new_size)
            record.details = resized.details
            record.size = max(new_size, record.size or 0)
            self.catalog.put(record)
        log.info("resized volume %s to %s%s", name, format_size(record.size), f": {resized.warning}" if resized.warning else "")
        return {**self.view(record), **({"warning": resized.warning} if resized.warning else {})}

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
        self.delete(name, keep_data=driver.capabilities.data_outside_host)

    def mount(self, name: str, ref_id: str, extra_mountpoint: str | None = None, create: bool = False) -> str:
        """Take one reference; the first one mounts the volume."""
        self._wait_ready()
        check_volume_name(name)
        if create and self.settings.create_on_docker_mount and self._lookup(name) is None:
            self.create(name)
        with self.volume_lock(name):
            record = self.require(name)
            if ref_id != RESTORE_REF:
                self.refuse_while_restoring(record, "mount")
            target = self.mountpoint(name)
            mounted = mounts.mounted_paths()
            extra = self._check_extra_mountpoint(name, extra_mountpoint, mounted) if extra_mountpoint else None
            first = not mounts.is_mounted(target, mounted)
            if first:
                self._mount_volume(record, target)
            bound = False
            try:
                if extra is not None and not mounts.is_mounted(extra, mounted):
                    self._bind_extra(target, extra)
                    bound = True
                self.catalog.add_ref(name, ref_id, str(extra) if extra else None)
            except BaseException:
                # no reference holds what this call mounted: leave none of it mounted
                if bound and extra is not None:
                    mounts.unmount(extra)
                if first:
                    self.driver(record.driver).unmount(record.ref(), target)
                raise
            return str(extra or target)

    @staticmethod
    def _bind_extra(target: Path, extra: Path) -> None:
        try:
            extra.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InvalidInput(f"cannot use {extra} as a mount point: {err.strerror}") from None
        mounts.bind_mount(target, extra)

    def _check_extra_mountpoint(self, name: str, requested: str, mounted: set[str]) -> Path:
        """Where `convoy mount --mountpoint` may put a volume: never over something else."""
        path = Path(requested)
        if not path.is_absolute():
            raise InvalidInput(f"mount point {requested!r} is relative: give an absolute path, for example /mnt/{name}")
        extra = Path(os.path.realpath(path))  # links resolved now, as mount(2) would resolve them
        for private in self._private_paths():
            if extra == private or private in extra.parents or extra in private.parents:
                raise InvalidInput(
                    f"mount point {requested} is {'inside' if private in extra.parents else 'over'} {private}, "
                    "which convoy keeps for its own storage and mounts: pick a path elsewhere"
                )
        if str(extra) in mounted:
            ours = any(ref.extra_mountpoint == str(extra) for ref in self.catalog.refs(name))
            if not ours:  # a tmpfs, a disk, or another volume: mounting over it would hide it
                raise Conflict(
                    f"{extra} is already a mount point; convoy mounts a volume only on a directory that is "
                    "not one: pick another path"
                )
        return extra

    def _private_paths(self) -> builtins.list[Path]:
        paths = [self.settings.root, self.mount_root]
        for driver in self.drivers.values():
            paths.extend(driver.private_paths())
        return [Path(os.path.realpath(path)) for path in paths]

    def _mount_volume(self, record: VolumeRecord, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        self.driver(record.driver).mount(record.ref(), target)

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

    def _release(
        self,
        record: VolumeRecord,
        ref_id: str,
        extra_mountpoint: str | None,
        refs: dict[str, MountRef],
        all_counts: bool,
    ) -> None:
        # Unmount before forgetting the reference: if the unmount fails, the
        # reference (and so the caller's retry) stays valid.
        total = sum(ref.count for ref in refs.values())
        releasing = refs[ref_id].count if all_counts else 1
        if extra_mountpoint and (all_counts or refs[ref_id].count == 1):
            self._unmount_extra(record.name, Path(extra_mountpoint))
        if total - releasing == 0:
            self.driver(record.driver).unmount(record.ref(), self.mountpoint(record.name))
        self.catalog.release_ref(record.name, ref_id, all_counts=all_counts)

    def _unmount_extra(self, name: str, extra: Path) -> None:
        """Unmount `convoy mount --mountpoint`'s bind, but only if it is still ours on top."""
        if not mounts.is_mounted(extra):
            return  # unmounted by someone else already: nothing of ours is there
        if not mounts.same_directory(extra, self.mountpoint(name)):
            raise Conflict(
                f"{extra} now shows another mount on top of volume {name}; unmount that one first, "
                f"then run `convoy umount {name}` again"
            )
        mounts.unmount(extra)

    def path(self, name: str) -> str:
        record = self.require(name)
        target = self.mountpoint(record.name)
        return str(target) if mounts.is_mounted(target) else ""

    def info(self) -> JSONObject:
        return {
            "root": str(self.settings.root),
            "mount_root": str(self.mount_root),
            "default_driver": self.settings.default_driver,
            "drivers": {
                name: {
                    "scope": driver.scope,
                    "data_outside_host": driver.capabilities.data_outside_host,
                    "snapshots": str(driver.capabilities.snapshots),
                    "resize": driver.capabilities.resize,
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


def _shared_record(driver_name: str, shared: SharedVolume) -> VolumeRecord:
    """A volume another host recorded on shared storage, as this host's catalog keeps it (adopted)."""
    return VolumeRecord(shared.name, driver_name, shared.size, shared.created_at, {}, shared.details, adopted=True)


def _check_size(size: object) -> int:
    # sizes also come from backups (a manifest's volume size): the catalog stores 64-bit integers
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_SIZE:
        raise InvalidInput(f"volume size {size!r} is out of range: give a size from 1 byte to less than 8192P")
    return size
