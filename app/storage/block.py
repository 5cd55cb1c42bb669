"""The layer under every block back-end: attach, make a file system once, mount.

A block back-end (a local image, EBS, DigitalOcean, a thin device) only
knows how to make, attach, detach and snapshot its devices. This base owns
the path every one of them shares, once:

    mount   = attach (unless attached here already) -> wait for the device
              -> make the file system only if the device is blank -> mount
    unmount = unmount -> detach
    resize  = grow the device -> grow the file system (online when mounted)

and undoes each step it took when a later one fails, so a failed mount
leaves the volume detached as it found it. After a crash or reboot,
`recover` asks the back-end what is attached here before anything mounts.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from app import mounts
from app.errors import Conflict, InvalidInput
from app.fs import filesystems
from app.storage.driver import (
    Capabilities,
    CreatedVolume,
    Details,
    Resized,
    SnapshotKind,
    StorageDriver,
    VolumeRef,
    VolumeSpec,
    WriteImage,
)
from app.units import format_size

log = logging.getLogger(__name__)

DEFAULT_FS = "ext4"
# below these, mkfs refuses (xfs) or leaves too little room for data to be useful (ext4)
MIN_FS_SIZE = {"ext4": 16 << 20, "xfs": 300 << 20}
MAX_STACKED_MOUNTS = 16  # a delete unmounts leftovers, but never loops forever


class Where(StrEnum):
    HERE = "here"
    ELSEWHERE = "elsewhere"
    DETACHED = "detached"


@dataclass(frozen=True)
class Attachment:
    """Where a block volume is attached now, as its back-end reports it."""

    where: Where
    device: str | None = None  # the device path, when attached here
    holder: str | None = None  # who holds it, when attached elsewhere (an instance, a droplet)


class BlockDriver(StorageDriver):
    """Subclass this for a new block back-end; implement the abstract methods below.

    Snapshots are the subclass's too (`create_snapshot`, `delete_snapshot`,
    `open_block_snapshot`): take them inside `self.consistent(volume)`.
    """

    volume_options: ClassVar[dict[str, str]] = {"fs": "file system made on a blank volume: ext4 (default) or xfs"}
    #: whether `grow_device` is implemented
    can_resize = False

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            snapshots=SnapshotKind.BLOCK,
            data_outside_host=self.data_outside_host,
            needs_attach=True,
            resize=self.can_resize,
        )

    @property
    @abstractmethod
    def data_outside_host(self) -> bool:
        """True for cloud volumes, which outlive this host."""

    # what a subclass implements

    @abstractmethod
    def create_device(self, spec: VolumeSpec) -> CreatedVolume:
        """Create (or adopt) the device, detached."""

    @abstractmethod
    def destroy_device(self, volume: VolumeRef) -> None:
        """Destroy the device and its data; it is detached. Must succeed when it is gone already."""

    @abstractmethod
    def attachment(self, volume: VolumeRef) -> Attachment:
        """Where the device is attached now (a fresh look, not a cached answer)."""

    @abstractmethod
    def attach(self, volume: VolumeRef) -> str:
        """Attach the detached device here; return its path once the node exists (with a deadline)."""

    @abstractmethod
    def detach(self, volume: VolumeRef) -> None:
        """Detach the device from this host; must succeed when it is not attached."""

    def grow_device(self, volume: VolumeRef, size: int) -> Details:
        """Grow the device to `size` bytes (it may be attached); return the new details."""
        raise self._unsupported("resizing volumes")

    def take_over(self, volume: VolumeRef, attachment: Attachment) -> None:
        """The device is attached elsewhere: detach it there if that is safe, or refuse.

        By default always refused: a back-end whose devices can be attached to
        another host decides when forcing that is safe (a stopped instance)."""
        raise Conflict(
            f"volume {volume.name} is attached to {attachment.holder or 'another host'}; "
            "unmount it there first"
        )

    # the common path

    def create_volume(self, spec: VolumeSpec) -> CreatedVolume:
        fs = filesystems.check_name(spec.options.get("fs") or DEFAULT_FS)
        smallest = MIN_FS_SIZE[fs]
        if spec.size is not None and spec.size < smallest:
            raise InvalidInput(
                f"size {format_size(spec.size)} is too small for an {fs} volume: give at least {format_size(smallest)}"
            )
        created = self.create_device(spec)
        return CreatedVolume({**created.details, "fs": fs}, created.size, created.adopted)

    def delete_volume(self, volume: VolumeRef, keep_data: bool) -> None:
        attachment = self.attachment(volume)
        if attachment.where is Where.HERE:
            self._unmount_everywhere(volume, attachment)
            self.detach(volume)
        if not keep_data:
            self.destroy_device(volume)

    def mount(self, volume: VolumeRef, target: Path) -> None:
        with self._attached(volume) as device:
            fs = filesystems.probe(device)
            if fs is None:
                fs = filesystems.check_name(str(volume.details.get("fs") or DEFAULT_FS))
                log.info("making an %s file system on %s for volume %s (it is blank)", fs, device, volume.name)
                filesystems.make(device, fs)
            # the device grew while the file system could not (a resize while mounted without the
            # right to grow it online, a restore into a bigger volume): it catches up now
            smaller = filesystems.filesystem_size(device, fs) < filesystems.size_of(device)
            if smaller and fs == "ext4":
                filesystems.grow_unmounted(device, fs)
            filesystems.mount(device, str(target), fs)
            if smaller and fs != "ext4":
                filesystems.grow(device, str(target), fs)

    def unmount(self, volume: VolumeRef, target: Path) -> None:
        mounts.unmount(target)
        attachment = self.attachment(volume)
        if attachment.where is not Where.HERE:
            return
        elsewhere = filesystems.mountpoint_of(attachment.device) if attachment.device else None
        if elsewhere is not None:  # someone mounted it by hand: convoy's unmount is done, the device stays
            log.warning("%s stays attached (%s): it is also mounted on %s", volume.name, attachment.device, elsewhere)
            return
        self.detach(volume)

    def recover(self, volume: VolumeRef, in_use: bool) -> None:
        if in_use:
            return  # it is mounted again, on the attachment that survives
        attachment = self.attachment(volume)
        if attachment.where is Where.HERE and not (attachment.device and filesystems.mountpoint_of(attachment.device)):
            log.info("detaching %s (%s): no mount holds it after the restart", volume.name, attachment.device)
            self.detach(volume)

    def resize(self, volume: VolumeRef, size: int) -> Resized:
        current = volume.size or 0
        if size < current:
            raise InvalidInput(
                f"volume {volume.name} is {format_size(current)}; it can only grow: give a size above that"
            )
        details = self.grow_device(volume, size) if size > current else dict(volume.details)
        attachment = self.attachment(volume)
        where = filesystems.mountpoint_of(attachment.device) if attachment.device else None
        if attachment.device is None or where is None:
            return Resized(details)  # its file system grows when it is next mounted
        fs = filesystems.probe(attachment.device)
        if fs == "ext4" and not filesystems.can_grow_mounted_ext4():
            return Resized(
                details,
                warning=(
                    f"the device of {volume.name} grew to {format_size(size)}; its ext4 file system grows when the "
                    "volume is next mounted (after its containers stop): growing a mounted ext4 needs the "
                    "CAP_SYS_RESOURCE capability, which this host does not give convoy (xfs volumes grow online)"
                ),
            )
        if fs is not None:
            filesystems.grow(attachment.device, where, fs)
        return Resized(details)

    def write_image(self, volume: VolumeRef, write: WriteImage) -> Details:
        with self._attached(volume, keep=False) as device:
            if filesystems.mountpoint_of(device):
                raise Conflict(f"volume {volume.name} is mounted; an image can only be written to an unmounted volume")
            write(device)  # a smaller image's file system grows to the device at the first mount
        return dict(volume.details)

    @contextmanager
    def consistent(self, volume: VolumeRef) -> Iterator[None]:
        """Hold the volume's file system still (frozen) while a snapshot is taken, when it is mounted."""
        attachment = self.attachment(volume)
        mountpoint = filesystems.mountpoint_of(attachment.device) if attachment.device else None
        if mountpoint is None:
            yield
            return
        with filesystems.frozen(mountpoint):
            yield

    # helpers

    @contextmanager
    def _attached(self, volume: VolumeRef, keep: bool = True) -> Iterator[str]:
        """The volume's device, attached here for the block; detached again if this attached it
        and the block fails (or always, with `keep=False`)."""
        attachment = self.attachment(volume)
        if attachment.where is Where.HERE and attachment.device:
            yield attachment.device
            return
        if attachment.where is Where.ELSEWHERE:
            self.take_over(volume, attachment)
        device = self.attach(volume)
        try:
            yield device
        except BaseException:
            self._detach_quietly(volume)
            raise
        if not keep:
            self.detach(volume)

    def _detach_quietly(self, volume: VolumeRef) -> None:
        try:
            self.detach(volume)
        except Exception:  # the first error is the one the user must see
            log.exception("could not detach %s after a failed step", volume.name)

    def _unmount_everywhere(self, volume: VolumeRef, attachment: Attachment) -> None:
        """Before a delete: the service unmounted its own mount; a leftover (a crash's) goes too."""
        for _ in range(MAX_STACKED_MOUNTS):
            mountpoint = filesystems.mountpoint_of(attachment.device) if attachment.device else None
            if mountpoint is None:
                return
            log.info("unmounting %s from %s before deleting it", volume.name, mountpoint)
            mounts.unmount(Path(mountpoint))
        raise Conflict(f"volume {volume.name} is still mounted after {MAX_STACKED_MOUNTS} unmounts; unmount it by hand")
