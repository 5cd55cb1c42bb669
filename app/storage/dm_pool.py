"""A dm-thin pool made by convoy on two devices: activated at start (again after a reboot), its messages, its use.

The pool device is `dm.thinpoolname` over `dm.metadatadev` and `dm.datadev`.
A metadata device is only ever formatted (by the kernel, at the pool's
first load) when its first 4 KiB are zero; one that holds anything but a
thin pool's superblock is refused, as a data device holding a file system
is, so a wrong device name never destroys data.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import Conflict, InvalidInput
from app.fs import dmsetup, filesystems, loop, thin_tools
from app.fs.dmsetup import PoolStatus
from app.storage.dm_options import DmOptions
from app.units import format_size

log = logging.getLogger(__name__)

LOW_WATER_BLOCKS = 32768 * 128  # sectors' worth of Convoy's low-water mark (2 GiB), in pool blocks below


class ThinPool:
    def __init__(self, options: DmOptions):
        self.options = options
        self.name = options.pool_name
        self.block_bytes = options.block_bytes
        self.metadata_dev = ""
        self.data_dev = ""
        # one metadata snapshot per pool at a time: thin_delta, thin_dump and thin_ls share it
        self._metadata_lock = threading.Lock()

    @property
    def device(self) -> str:
        return dmsetup.device_path(self.name)

    # start-up

    def activate(self) -> None:
        """Make the pool active: it is already, or load it on its devices (a new pool on blank metadata)."""
        self.data_dev = _block_device(self.options.datadev or "", "dm.datadev")
        self.metadata_dev = _block_device(self.options.metadatadev or "", "dm.metadatadev")
        if self.name in dmsetup.names():
            self._check_active_table()
            return
        kind = thin_tools.metadata_kind(self.metadata_dev)
        if kind == "other":
            raise Conflict(
                f"dm.metadatadev={self.options.metadatadev} holds something that is not a thin pool's metadata: "
                "convoy formats only a blank metadata device; if it is unused, zero its first 4 KiB "
                f"(dd if=/dev/zero of={self.metadata_dev} bs=4096 count=1)"
            )
        if kind == "blank":
            found = filesystems.probe(self.data_dev)
            if found is not None:
                raise Conflict(
                    f"dm.datadev={self.options.datadev} holds a {found} file system and the metadata device is blank: "
                    "a new pool would destroy it; give an unused device (or wipefs it if its data is not needed)"
                )
            log.info("making a new thin pool %s on %s (metadata %s)", self.name, self.data_dev, self.metadata_dev)
        else:
            log.info("activating the thin pool %s again on %s (metadata %s)", self.name, self.data_dev, self.metadata_dev)
        dmsetup.create(self.name, self.table())
        status = self.status()
        if status.needs_check or status.mode != "rw":
            log.warning(
                "thin pool %s is %s%s: see the kernel log", self.name, status.mode, ", needs_check" if status.needs_check else ""
            )

    def table(self) -> str:
        sectors = filesystems.size_of(self.data_dev) // 512
        blocks = sectors // self.options.block_sectors
        if blocks < 1:
            raise InvalidInput(
                f"dm.datadev={self.options.datadev} ({format_size(sectors * 512)}) is smaller than one pool block "
                f"({format_size(self.block_bytes)})"
            )
        low_water = max(1, min(blocks // 10, LOW_WATER_BLOCKS // self.options.block_sectors))
        devices = f"{self.metadata_dev} {self.data_dev}"
        return f"0 {blocks * self.options.block_sectors} thin-pool {devices} {self.options.block_sectors} {low_water}"

    def _check_active_table(self) -> None:
        """An active pool of that name must be this one: the same devices and block size."""
        fields = dmsetup.table(self.name).split()
        if len(fields) < 7 or fields[2] != "thin-pool":
            raise Conflict(f"device-mapper device {self.name} exists and is not a thin pool: set another dm.thinpoolname")
        wanted = (_devno(self.metadata_dev), _devno(self.data_dev), str(self.options.block_sectors))
        if tuple(fields[3:6]) != wanted:
            raise Conflict(
                f"thin pool {self.name} is active on other devices or another block size ({' '.join(fields[3:6])}, "
                f"wanted {' '.join(wanted)}): check dm.datadev, dm.metadatadev, dm.thinpoolblocksize, dm.thinpoolname"
            )

    # use

    def dm_device(self) -> str:
        """The device-mapper name of the thin-pool target now (LVM's changes with what is active)."""
        return self.name

    def status(self) -> PoolStatus:
        return dmsetup.parse_pool_status(dmsetup.status(self.dm_device()))

    def message(self, text: str) -> None:
        dmsetup.message(self.dm_device(), text)

    def thin_table(self, device_id: int, size: int) -> str:
        return f"0 {size // 512} thin {self.device} {device_id}"

    @contextmanager
    def metadata_snapshot(self) -> Iterator[str]:
        """A metadata snapshot of the live pool, held for the block; yields the metadata device to read it on."""
        with self._metadata_lock:
            self.release_stale_metadata_snapshot()
            self.message("reserve_metadata_snap")
            try:
                yield self.metadata_dev
            finally:
                self.message("release_metadata_snap")

    def release_stale_metadata_snapshot(self) -> None:
        """A kill -9 while one was held leaves it held (and the next reserve refused)."""
        if self.status().held_root != "-":
            log.info("releasing the metadata snapshot of thin pool %s that a crash left held", self.name)
            self.message("release_metadata_snap")

    def device_ids(self) -> set[int]:
        with self.metadata_snapshot() as metadata:
            return thin_tools.device_ids(metadata)


def _block_device(path: str, option: str) -> str:
    """`path` as a block device: a regular file is attached to a loop device (the same one again if it is)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InvalidInput(f"{option}={path} does not exist: give a block device or a file") from None
    if stat.S_ISBLK(st.st_mode):
        return path
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"{option}={path} is neither a block device nor a file")
    attached = loop.devices_of(os.path.abspath(path))
    return attached[0] if attached else loop.attach(os.path.abspath(path))


def _devno(device: str) -> str:
    st = os.stat(device)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
