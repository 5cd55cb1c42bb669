"""The `devicemapper` back-end: a volume is a thin device in a dm-thin pool, as in Convoy.

Built on `BlockDriver` (which makes the file system once, mounts, grows it
and recovers after a crash); this module knows the pool:

    volume    create_thin ID              (a thin device, costs nothing until written)
    attach    dmsetup create <pool>-<ID>  (the thin target over the pool: /dev/mapper/<pool>-<ID>)
    snapshot  freeze the fs, suspend the origin, create_snap ID ORIGIN, resume, thaw: instant
    backup    the snapshot activated read-only; only its mapped ranges are read (thin_dump),
              and after the first only what thin_delta reports changed since the last one
    delete    delete ID (Docker's remove too: the data lives on this host); `convoy delete -r` keeps it

Device ids: each create and delete is written to the ledger (dm_ledger.py)
before its message, and settled at start against the pool's own list
(thin_ls), so a kill -9 between any two steps loses no id and never hands
one out twice. Thin devices the ledger does not know are reported, never
deleted.

Fault injection, for the tests that kill the daemon between steps:
CONVOY_DM_FAULT=<operation>:<step> (operation create, snapshot or delete;
steps numbered in `_step` calls below), or CONVOY_DM_FAULT_FILE naming a
file holding it, makes the daemon SIGKILL itself right after that step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from app.errors import NotFound, Unavailable
from app.fs import dmsetup, filesystems, thin_tools
from app.fs.filesystems import FITHAW
from app.storage import dm_options
from app.storage.block import Attachment, BlockDriver, Where
from app.storage.dm_ledger import CREATING, DELETING, KEPT, READY, Entry, Ledger
from app.storage.dm_pool import ThinPool
from app.storage.driver import BlockSource, CreatedVolume, Details, SnapshotRef, VolumeRef, VolumeSpec
from app.units import format_size

log = logging.getLogger(__name__)

FAULT_ENV = "CONVOY_DM_FAULT"
FAULT_FILE_ENV = "CONVOY_DM_FAULT_FILE"
SIZE_ALIGN = 1 << 20  # thin device sizes are whole MiB
CREATE_TRIES = 3  # an id taken by a device the ledger never knew: the next one is tried


class DmDriver(BlockDriver):
    name = "devicemapper"
    option_prefix = "dm"
    daemon_options: ClassVar[dict[str, str]] = dm_options.DAEMON_OPTIONS
    can_resize = True

    def __new__(cls, options: dict[str, str], state_dir: Path) -> DmDriver:
        """dm.lvm_thinpool picks the LVM flavour (dm_lvm.py): one back-end name, two kinds of pool."""
        if cls is DmDriver and options.get("dm.lvm_thinpool"):
            from app.storage.dm_lvm import LvmDmDriver

            return super().__new__(LvmDmDriver)
        return super().__new__(cls)

    def __init__(self, options: dict[str, str], state_dir: Path):
        super().__init__(options, state_dir)
        self.config = dm_options.parse(options)
        self.pool = ThinPool(self.config)
        self.ledger = Ledger(state_dir / "devicemapper" / f"{self.config.pool_name}.json")
        self.orphans: set[int] = set()  # ids in the pool the ledger does not know: never allocated, never deleted
        self._warned_full = False

    @property
    def data_outside_host(self) -> bool:
        return False

    # start-up: the pool, then what a crash left half-done

    def start(self) -> None:
        self.ledger.load()
        self.pool.activate()
        self.pool.release_stale_metadata_snapshot()
        self._resume_and_thaw()
        self._settle()
        self.report_use()

    def _resume_and_thaw(self) -> None:
        """A kill -9 during a snapshot leaves its origin suspended and its file system frozen: writers hang."""
        pool_devno = dmsetup.devno(self.pool.name)
        for thin in dmsetup.thin_tables():
            if thin.pool != pool_devno:
                continue
            if dmsetup.is_suspended(thin.name):
                log.info("resuming %s: a snapshot interrupted by a crash left it suspended", thin.name)
                dmsetup.resume(thin.name)
            mountpoint = filesystems.mountpoint_of(dmsetup.device_path(thin.name))
            if mountpoint is not None:
                _thaw(mountpoint)
            entry = self.ledger.devices.get(thin.device_id)
            if entry is not None and entry.kind == "snapshot" and mountpoint is None:
                log.info("removing %s: a snapshot activated for a backup that a crash interrupted", thin.name)
                dmsetup.remove(thin.name)

    def _settle(self) -> None:
        """Finish what the ledger says was under way, by what the pool holds."""
        in_pool = self.pool.device_ids()
        for device_id, entry in sorted(self.ledger.devices.items()):
            if entry.state == CREATING:
                # no one was told of it: roll back
                if device_id in in_pool:
                    log.info("deleting thin device %d: its create (%s) was interrupted", device_id, _what(entry))
                    self._delete_message(device_id)
                self.ledger.drop(device_id)
            elif entry.state == DELETING:
                if device_id in in_pool:  # the catalog still names it: it stays, a delete can be asked again
                    log.info("thin device %d (%s) was not deleted before a crash: it stays", device_id, _what(entry))
                    self.ledger.set_state(device_id, READY)
                else:
                    self.ledger.drop(device_id)
            elif device_id not in in_pool:
                log.warning(
                    "thin device %d (%s) is missing from pool %s: its data is lost", device_id, _what(entry), self.pool.name
                )
        self.orphans = in_pool - set(self.ledger.devices)
        if self.orphans:
            log.warning(
                "thin pool %s holds device(s) %s that convoy did not make (or no longer knows): they are left as they "
                'are; delete one with `dmsetup message %s 0 "delete ID"` when it is not needed',
                self.pool.name,
                ", ".join(map(str, sorted(self.orphans))),
                self.pool.name,
            )
        kept = [entry.volume for entry in self.ledger.devices.values() if entry.state == KEPT]
        if kept:
            log.info(
                "thin devices kept by `convoy delete -r`: %s (create a volume of that name to take one back)", ", ".join(kept)
            )

    # the pool's use

    def report_use(self) -> dmsetup.PoolStatus:
        status = self.pool.status()
        worst = max(status.data_percent, status.metadata_percent)
        if self.config.autoextend and worst >= self.config.autoextend:
            if not self._warned_full:
                log.warning(
                    "thin pool %s needs extending: %s (dm.autoextend=%d%%)", self.pool.name, _use(status), self.config.autoextend
                )
            self._warned_full = True
        else:
            self._warned_full = False
        return status

    def _check_room(self, what: str) -> None:
        status = self.report_use()
        limit = 100 - self.config.min_free
        if status.mode != "rw":
            raise Unavailable(f"thin pool {self.pool.name} is {status.mode}: {what} refused; extend the pool, see dmesg")
        if self.config.min_free and (status.data_percent >= limit or status.metadata_percent >= limit):
            raise Unavailable(
                f"thin pool {self.pool.name} is nearly full ({_use(status)}): {what} refused above {limit}% "
                f"(dm.min_free_space={self.config.min_free}%) so existing volumes do not freeze; "
                "extend the pool or delete volumes and snapshots"
            )

    # naming

    def dm_name(self, device_id: int) -> str:
        return f"{self.pool.name}-{device_id}"

    def _device_id(self, volume: str, details: Mapping[str, Any], snapshot: str | None = None) -> int:
        device_id = details.get("device_id")
        if not isinstance(device_id, int) or not self.ledger.owns(device_id, volume, snapshot):
            what = f"snapshot {snapshot} of volume {volume}" if snapshot else f"volume {volume}"
            raise NotFound(
                f"the thin device of {what} (id {device_id}) is not in convoy's record of pool {self.pool.name}: "
                "its data is gone; delete it from convoy"
            )
        return device_id

    # volumes

    def create_volume(self, spec: VolumeSpec) -> CreatedVolume:
        if "fs" not in spec.options:  # dm.fs is this back-end's default file system
            spec = dataclasses.replace(spec, options={**spec.options, "fs": self.config.fs})
        return super().create_volume(spec)

    def create_device(self, spec: VolumeSpec) -> CreatedVolume:
        existing = self.ledger.find("volume", spec.name)
        if existing is not None:
            entry = self.ledger.devices[existing]
            # kept by `convoy delete -r`, or made by a create whose answer a crash lost: the name means this device
            log.info("taking thin device %d (%s, %s) as volume %s", existing, entry.state, format_size(entry.size), spec.name)
            self.ledger.set_state(existing, READY)
            return CreatedVolume(self._details(existing), size=entry.size, adopted=True)
        self._check_room(f"a new volume ({spec.name})")
        size = -(-(spec.size or self.config.default_size) // SIZE_ALIGN) * SIZE_ALIGN
        device_id = self._new_device(Entry("volume", spec.name, CREATING, size), "create", "create_thin {id}")
        return CreatedVolume(self._details(device_id), size=size)

    def _new_device(self, entry: Entry, operation: str, text: str) -> int:
        """Record the intent, send the message, mark it done: steps 1, 2, 3 of `operation`."""
        for _ in range(CREATE_TRIES):
            device_id = self.ledger.allocate(entry, self.orphans)
            _step(operation, 1)
            try:
                self.pool.message(text.format(id=device_id, origin=entry.origin))
            except Unavailable as err:
                self.ledger.drop(device_id)
                if "File exists" not in str(err):
                    raise
                log.warning("thin device id %d is taken in pool %s by a device convoy did not know", device_id, self.pool.name)
                self.orphans.add(device_id)
                continue
            _step(operation, 2)
            self.ledger.set_state(device_id, READY)
            _step(operation, 3)
            return device_id
        raise Unavailable(f"thin pool {self.pool.name} refused {CREATE_TRIES} new device ids: see its devices with thin_ls")

    def _details(self, device_id: int) -> Details:
        return {"device_id": device_id, "pool": self.pool.name}

    def delete_volume(self, volume: VolumeRef, keep_data: bool) -> None:
        super().delete_volume(volume, keep_data)
        if keep_data:
            device_id = volume.details.get("device_id")
            if isinstance(device_id, int) and self.ledger.owns(device_id, volume.name):
                self.ledger.set_state(device_id, KEPT)

    def destroy_device(self, volume: VolumeRef) -> None:
        device_id = volume.details.get("device_id")
        if not isinstance(device_id, int) or not self.ledger.owns(device_id, volume.name):
            return  # gone already (a delete that a crash interrupted after the message)
        self._delete_device(device_id)

    def _delete_device(self, device_id: int) -> None:
        """Intent, deactivate, message, forget: steps 1, 2, 3 of delete."""
        self.ledger.set_state(device_id, DELETING)
        _step("delete", 1)
        dmsetup.remove(self.dm_name(device_id))
        self._delete_message(device_id)
        _step("delete", 2)
        self.ledger.drop(device_id)
        _step("delete", 3)

    def _delete_message(self, device_id: int) -> None:
        try:
            self.pool.message(f"delete {device_id}")
        except Unavailable as err:
            if "No data available" not in str(err):  # ENODATA: no such device, gone already
                raise

    def attachment(self, volume: VolumeRef) -> Attachment:
        device_id = volume.details.get("device_id")
        if isinstance(device_id, int) and self.dm_name(device_id) in dmsetup.names(target="thin"):
            return Attachment(Where.HERE, device=dmsetup.device_path(self.dm_name(device_id)))
        return Attachment(Where.DETACHED)

    def attach(self, volume: VolumeRef) -> str:
        device_id = self._device_id(volume.name, volume.details)
        size = self.ledger.devices[device_id].size
        return dmsetup.create(self.dm_name(device_id), self.pool.thin_table(device_id, size))

    def detach(self, volume: VolumeRef) -> None:
        device_id = volume.details.get("device_id")
        if isinstance(device_id, int):
            dmsetup.remove(self.dm_name(device_id))

    def grow_device(self, volume: VolumeRef, size: int) -> Details:
        device_id = self._device_id(volume.name, volume.details)
        size = -(-size // SIZE_ALIGN) * SIZE_ALIGN
        name = self.dm_name(device_id)
        with self.ledger.changing():
            self.ledger.devices[device_id].size = size
        if name in dmsetup.names(target="thin"):
            dmsetup.reload(name, self.pool.thin_table(device_id, size))
            dmsetup.resume(name)  # swaps the bigger table in
        return self._details(device_id)

    # views

    def status(self, volume: VolumeRef) -> Details:
        details = dict(volume.details)
        attachment = self.attachment(volume)
        details["device"] = attachment.device
        with contextlib.suppress(Exception):  # a view: the pool's use is shown when it can be read
            details["pool_use"] = _use(self.pool.status())
        return details

    def settings_problem(self, volume: VolumeRef) -> str | None:
        pool = volume.details.get("pool")
        if pool and pool != self.pool.name:
            return f"{volume.name} lives in thin pool {pool}, not {self.pool.name} (dm.thinpoolname)"
        return None

    # snapshots

    def create_snapshot(self, volume: VolumeRef, snapshot: str) -> Details:
        origin = self._device_id(volume.name, volume.details)
        stale = self.ledger.find("snapshot", volume.name, snapshot)
        if stale is not None:  # made before a crash lost the answer: the catalog never had it
            log.info("deleting thin device %d: snapshot %s of %s from before a crash, taken again", stale, snapshot, volume.name)
            self._delete_device(stale)
        self._check_room(f"a snapshot of {volume.name}")
        entry = Entry("snapshot", volume.name, CREATING, self.ledger.devices[origin].size, snapshot, origin)
        name = self.dm_name(origin)
        with self.consistent(volume):
            active = name in dmsetup.names(target="thin")
            if active:  # the origin must be still while the pool copies its mappings
                dmsetup.suspend(name, lockfs=False)  # its file system is frozen by consistent() already
            try:
                device_id = self._new_device(entry, "snapshot", "create_snap {id} {origin}")
            finally:
                if active:
                    dmsetup.resume(name)
        _step("snapshot", 4)
        return {"device_id": device_id, "origin": origin, "pool": self.pool.name}

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        device_id = snapshot.details.get("device_id")
        if isinstance(device_id, int) and self.ledger.owns(device_id, snapshot.volume.name, snapshot.name):
            self._delete_device(device_id)

    @contextmanager
    def open_block_snapshot(self, snapshot: SnapshotRef, since: SnapshotRef | None) -> Iterator[BlockSource]:
        device_id = self._device_id(snapshot.volume.name, snapshot.details, snapshot.name)
        earlier = since.details.get("device_id") if since is not None else None
        if not (isinstance(earlier, int) and since is not None and self.ledger.owns(earlier, since.volume.name, since.name)):
            earlier = None  # that snapshot is gone: a full read of the mapped ranges
        size = self.ledger.devices[device_id].size
        name = self.dm_name(device_id)
        with self.block_source(device_id, earlier, since, size) as source:
            path = dmsetup.create(name, self.pool.thin_table(device_id, size), read_only=True)
            try:
                yield dataclasses.replace(source, path=path)
            finally:
                dmsetup.remove(name)

    @contextmanager
    def block_source(self, device_id: int, earlier: int | None, since: SnapshotRef | None, size: int) -> Iterator[BlockSource]:
        """Thin device `device_id` as a block source (the caller fills in its path): its mapped ranges, and
        what changed since thin device `earlier`, read on one metadata snapshot of the live pool."""
        with self.pool.metadata_snapshot() as metadata:
            mapped = thin_tools.mapped_blocks(metadata, device_id)
            changed = thin_tools.changed_blocks(metadata, earlier, device_id) if earlier is not None else None
        block = self.pool.block_bytes
        yield BlockSource(
            path="",
            size=size,
            data_ranges=thin_tools.to_bytes(mapped, block, size),
            changed_ranges=thin_tools.to_bytes(changed, block, size),
            changed_since=since.name if changed is not None and since is not None else None,
        )


def _what(entry: Entry) -> str:
    return f"snapshot {entry.snapshot} of volume {entry.volume}" if entry.snapshot else f"volume {entry.volume}"


def _use(status: dmsetup.PoolStatus) -> str:
    return (
        f"data {status.data_percent:.1f}% used ({status.data_used} of {status.data_total} blocks), "
        f"metadata {status.metadata_percent:.1f}% used ({status.metadata_used} of {status.metadata_total} blocks)"
    )


def _thaw(mountpoint: str) -> None:
    """Thaw a file system a crash left frozen; one that is not frozen answers EINVAL, which is fine."""
    try:
        fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.ioctl(fd, FITHAW, 0)
        log.info("thawed %s: a snapshot interrupted by a crash left it frozen", mountpoint)
    except OSError as err:
        if err.errno != errno.EINVAL:
            log.warning("could not thaw %s: %s", mountpoint, err.strerror)
    finally:
        os.close(fd)


def _step(operation: str, step: int) -> None:
    """Fault injection for the crash tests: die here, as kill -9 would.

    CONVOY_DM_FAULT=operation:step, or CONVOY_DM_FAULT_FILE=PATH naming a file that holds operation:step
    (read at each step and removed before dying, so a test arms it without restarting the daemon and the
    restart runs clean)."""
    wanted = os.environ.get(FAULT_ENV)
    fault_file = os.environ.get(FAULT_FILE_ENV)
    if wanted is None and fault_file:
        with contextlib.suppress(OSError):
            wanted = Path(fault_file).read_text().strip()
    if wanted != f"{operation}:{step}":
        return
    if fault_file:
        Path(fault_file).unlink(missing_ok=True)
    log.warning("fault injection: killing the daemon after step %d of %s", step, operation)
    os.kill(os.getpid(), signal.SIGKILL)
