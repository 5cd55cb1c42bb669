"""The devicemapper back-end on an existing LVM thin pool (`dm.lvm_thinpool=VG/POOL`), what most hosts have.

Volumes are thin LVs (`lvcreate --thin`), snapshots thin snapshots
(`lvcreate -s`: LVM suspends the origin with its file system frozen by the
kernel for that instant, so no fsfreeze of our own, which the kernel would
refuse on top of LVM's). LVM keeps the names and device ids in its own
metadata, crash-safe, so no ledger: a volume's LV is `convoy_<name>`, a
snapshot's `convoy_<name>_snap_<snapshot>` (hashed when longer than LVM
allows). Backups read the pool's metadata snapshot exactly as on a pool of
convoy's own: LVM's pool is a dm thin-pool (`VG-POOL-tpool`) over
`VG-POOL_tmeta`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.errors import NotFound, Unavailable
from app.fs import dmsetup, lvm
from app.storage.block import Attachment, Where
from app.storage.devicemapper import SIZE_ALIGN, DmDriver
from app.storage.dm_options import DmOptions, LvmPool
from app.storage.dm_pool import ThinPool
from app.storage.driver import BlockSource, CreatedVolume, Details, SnapshotRef, VolumeRef, VolumeSpec
from app.units import format_size

log = logging.getLogger(__name__)

LV_PREFIX = "convoy_"
MAX_LV_NAME = 120  # LVM allows 127; room for its own suffixes (_tmeta, ...)


class LvmThinPool(ThinPool):
    """LVM's thin pool as dm sees it: messages go to its -tpool device, thin_* tools read its _tmeta."""

    def __init__(self, options: DmOptions, lvm_pool: LvmPool):
        super().__init__(options)
        self.lvm = lvm_pool

    def activate(self) -> None:
        lvm.pool_check(self.lvm.vg, self.lvm.pool)
        lvm.activate_pool(self.lvm.vg, self.lvm.pool)
        self.name = lvm.dm_name(self.lvm.vg, self.lvm.pool)
        fields = dmsetup.table(self.dm_device()).split()
        if len(fields) < 7 or fields[2] != "thin-pool":
            raise Unavailable(f"LVM did not activate {self.lvm} as a thin pool ({' '.join(fields[:3])})")
        self.block_bytes = int(fields[5]) * 512
        self.metadata_dev = dmsetup.wait_node(f"{self.name}_tmeta")

    def dm_device(self) -> str:
        """LVM activates a pool with no active thin LV as VG-POOL itself, and moves the thin-pool target to
        VG-POOL-tpool (VG-POOL becoming a linear stub) once one is: looked up at each use."""
        tpool = f"{self.name}-tpool"
        return tpool if tpool in dmsetup.names() else self.name


class LvmDmDriver(DmDriver):
    def __init__(self, options: dict[str, str], state_dir: Path):
        super().__init__(options, state_dir)
        assert self.config.lvm is not None  # noqa: S101 - DmDriver.__new__ picks this class only then
        self.lvm = self.config.lvm
        self.pool = LvmThinPool(self.config, self.lvm)

    def start(self) -> None:
        self.pool.activate()
        self.pool.release_stale_metadata_snapshot()
        self.report_use()

    # names

    def lv_name(self, volume: str, snapshot: str | None = None) -> str:
        name = LV_PREFIX + volume + (f"_snap_{snapshot}" if snapshot else "")
        if len(name) > MAX_LV_NAME:
            name = name[: MAX_LV_NAME - 17] + "_" + hashlib.sha256(name.encode()).hexdigest()[:16]
        return name

    def _lv(self, details: Mapping[str, Any], what: str) -> str:
        lv = details.get("lv")
        if not isinstance(lv, str) or not lv:
            raise NotFound(f"{what} has no LVM volume recorded: delete it from convoy")
        return lv

    def _lv_details(self, lv: str) -> Details:
        return {"vg": self.lvm.vg, "lv": lv, "pool": str(self.lvm)}

    # volumes

    def create_device(self, spec: VolumeSpec) -> CreatedVolume:
        lv = self.lv_name(spec.name)
        if lvm.exists(self.lvm.vg, lv):  # kept by `convoy delete -r`, or a create whose answer a crash lost
            size = lvm.size_of(self.lvm.vg, lv)
            log.info("taking the thin volume %s/%s (%s) as volume %s", self.lvm.vg, lv, format_size(size), spec.name)
            return CreatedVolume(self._lv_details(lv), size=size, adopted=True)
        self._check_room(f"a new volume ({spec.name})")
        size = -(-(spec.size or self.config.default_size) // SIZE_ALIGN) * SIZE_ALIGN
        lvm.create_thin(self.lvm.vg, self.lvm.pool, lv, size)
        return CreatedVolume(self._lv_details(lv), size=size)

    def delete_volume(self, volume: VolumeRef, keep_data: bool) -> None:
        super(DmDriver, self).delete_volume(volume, keep_data)  # the block layer's; no ledger to mark

    def destroy_device(self, volume: VolumeRef) -> None:
        lvm.remove(self.lvm.vg, self._lv(volume.details, f"volume {volume.name}"))

    def attachment(self, volume: VolumeRef) -> Attachment:
        lv = volume.details.get("lv")
        name = lvm.dm_name(self.lvm.vg, str(lv))
        if lv and name in dmsetup.names(target="thin"):
            return Attachment(Where.HERE, device=dmsetup.device_path(name))
        return Attachment(Where.DETACHED)

    def attach(self, volume: VolumeRef) -> str:
        return lvm.activate(self.lvm.vg, self._lv(volume.details, f"volume {volume.name}"))

    def detach(self, volume: VolumeRef) -> None:
        lv = volume.details.get("lv")
        if lv and lvm.dm_name(self.lvm.vg, str(lv)) in dmsetup.names():
            lvm.deactivate(self.lvm.vg, str(lv))

    def grow_device(self, volume: VolumeRef, size: int) -> Details:
        lv = self._lv(volume.details, f"volume {volume.name}")
        lvm.extend(self.lvm.vg, lv, -(-size // SIZE_ALIGN) * SIZE_ALIGN)
        return self._lv_details(lv)

    # snapshots

    def create_snapshot(self, volume: VolumeRef, snapshot: str) -> Details:
        origin = self._lv(volume.details, f"volume {volume.name}")
        lv = self.lv_name(volume.name, snapshot)
        if lvm.exists(self.lvm.vg, lv):  # made before a crash lost the answer: the catalog never had it
            log.info("removing %s/%s: a snapshot from before a crash, taken again", self.lvm.vg, lv)
            lvm.remove(self.lvm.vg, lv)
        self._check_room(f"a snapshot of {volume.name}")
        lvm.create_snapshot(self.lvm.vg, origin, lv)
        return {**self._lv_details(lv), "origin": origin}

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        lv = snapshot.details.get("lv")
        if isinstance(lv, str) and lv:
            with contextlib.suppress(NotFound):
                lvm.remove(self.lvm.vg, lv)

    @contextmanager
    def open_block_snapshot(self, snapshot: SnapshotRef, since: SnapshotRef | None) -> Iterator[BlockSource]:
        lv = self._lv(snapshot.details, f"snapshot {snapshot.name}")
        device_id = lvm.thin_id(self.lvm.vg, lv)
        earlier = None
        earlier_lv = since.details.get("lv") if since is not None else None
        if isinstance(earlier_lv, str) and earlier_lv and lvm.exists(self.lvm.vg, earlier_lv):
            earlier = lvm.thin_id(self.lvm.vg, earlier_lv)
        size = lvm.size_of(self.lvm.vg, lv)
        with self.block_source(device_id, earlier, since, size) as source:
            path = lvm.activate(self.lvm.vg, lv, skip_flag=True)
            try:
                yield dataclasses.replace(source, path=path)
            finally:
                lvm.deactivate(self.lvm.vg, lv)

    def settings_problem(self, volume: VolumeRef) -> str | None:
        pool = volume.details.get("pool")
        if pool and pool != str(self.lvm):
            return f"{volume.name} lives in thin pool {pool}, not {self.lvm} (dm.lvm_thinpool)"
        return None
