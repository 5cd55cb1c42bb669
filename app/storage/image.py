"""The `image` back-end: a volume is a sparse image file with its own file system, on a loop device.

What it gives that VFS cannot: `size` is a hard limit (a container writing
past it gets ENOSPC), a volume grows online (`convoy resize`), and
snapshots are block-level: a reflink copy of the image where the file
system allows (XFS, btrfs: instant), a sparse copy elsewhere. Its backups
are image backups, incremental by the extents two reflinked images no
longer share.

Layout under `image.path` (default `<root>/images`, 0700):
    <volume>.img                       the volume
    .snapshots/<volume>/<snapshot>.img its snapshots (`.partial` while one is taken)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from app.errors import Conflict, Unavailable
from app.fs import loop
from app.fs.clone import clone_or_copy, supports_reflink
from app.private_dirs import make_private
from app.storage.block import Attachment, BlockDriver, Where
from app.storage.driver import (
    BlockSource,
    CreatedVolume,
    Details,
    SnapshotRef,
    VolumeRef,
    VolumeSpec,
)
from app.units import format_size, parse_size

log = logging.getLogger(__name__)

SUFFIX = ".img"
SNAPSHOTS = ".snapshots"  # cannot clash with a volume: names start with a letter or digit
PARTIAL = ".partial"
DEFAULT_SIZE = "10G"  # sparse: costs nothing until written
OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class ImageDriver(BlockDriver):
    name = "image"
    daemon_options: ClassVar[dict[str, str]] = {
        "image.path": "directory that holds the volumes' image files; default <root>/images",
        "image.default_size": f"size of a volume created without one; default {DEFAULT_SIZE}",
    }
    can_resize = True

    def __init__(self, options: dict[str, str], state_dir: Path):
        super().__init__(options, state_dir)
        self.path = Path(options.get("image.path") or state_dir / "images").absolute()
        self.snapshots_dir = self.path / SNAPSHOTS
        self.default_size = parse_size(options.get("image.default_size") or DEFAULT_SIZE)
        self._snapshot_method: str | None = None

    @property
    def data_outside_host(self) -> bool:
        return False

    def private_paths(self) -> list[Path]:
        return [self.path]

    def start(self) -> None:
        super().start()
        make_private(self.path)
        make_private(self.snapshots_dir)
        _ = self.snapshot_method  # probed once here, off the request path
        self._detach_deleted_images()
        for partial in self.snapshots_dir.glob(f"*/*{PARTIAL}"):
            log.info("removing %s: a snapshot interrupted by a crash", partial)
            partial.unlink(missing_ok=True)

    def _detach_deleted_images(self) -> None:
        """A crash between detaching and deleting can leave a loop device on a deleted image."""
        prefix = str(self.path).rstrip("/") + "/"
        for device, backing in loop.attached().items():
            if backing.startswith(prefix) and backing.endswith(" (deleted)"):
                log.info("detaching %s: its image %s was deleted", device, backing)
                loop.detach(device)

    # files

    def image_file(self, name: str) -> Path:
        return self.path / (name + SUFFIX)

    def snapshot_file(self, volume: str, snapshot: str) -> Path:
        return self.snapshots_dir / volume / (snapshot + SUFFIX)

    @property
    def snapshot_method(self) -> str:
        if self._snapshot_method is None:
            make_private(self.path)
            self._snapshot_method = "reflink" if supports_reflink(str(self.path)) else "copy"
        return self._snapshot_method

    # the device

    def create_device(self, spec: VolumeSpec) -> CreatedVolume:
        image = self.image_file(spec.name)
        size = spec.size or self.default_size
        make_private(self.path)
        existing = _regular_file_size(image)
        if existing is not None:
            log.info("adopting the existing image %s (%s) as volume %s", image, format_size(existing), spec.name)
            return CreatedVolume({"image": str(image)}, size=existing, adopted=True)
        try:
            fd = os.open(image, OPEN_NEW, 0o600)
            try:
                os.ftruncate(fd, size)  # sparse: no block is allocated until written
            finally:
                os.close(fd)
        except OSError as err:
            image.unlink(missing_ok=True)
            raise Unavailable(f"cannot create {image}: {err.strerror}; check that image.path is writable") from None
        return CreatedVolume({"image": str(image)}, size=size)

    def destroy_device(self, volume: VolumeRef) -> None:
        self.image_file(volume.name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # its snapshots are gone already (the service
            (self.snapshots_dir / volume.name).rmdir()  # refuses a delete before): only their empty directory

    def attachment(self, volume: VolumeRef) -> Attachment:
        devices = loop.devices_of(str(self.image_file(volume.name)))
        if not devices:
            return Attachment(Where.DETACHED)
        return Attachment(Where.HERE, device=devices[0])

    def attach(self, volume: VolumeRef) -> str:
        image = self.image_file(volume.name)
        if _regular_file_size(image) is None:
            raise Unavailable(
                f"the image of volume {volume.name} is missing: {image} does not exist; "
                f"restore it there or delete the volume with `convoy delete {volume.name}`"
            )
        return loop.attach(str(image))

    def detach(self, volume: VolumeRef) -> None:
        for device in loop.devices_of(str(self.image_file(volume.name))):
            loop.detach(device)

    def grow_device(self, volume: VolumeRef, size: int) -> Details:
        image = self.image_file(volume.name)
        try:
            os.truncate(image, size)
        except OSError as err:
            raise Unavailable(f"cannot grow {image} to {format_size(size)}: {err.strerror}") from None
        for device in loop.devices_of(str(image)):
            loop.refresh_capacity(device)
        return dict(volume.details)

    # views

    def status(self, volume: VolumeRef) -> Details:
        attachment = self.attachment(volume)
        return {"image": str(self.image_file(volume.name)), "device": attachment.device, "snapshots": self.snapshot_method}

    def settings_problem(self, volume: VolumeRef) -> str | None:
        old = volume.details.get("image")
        if old and Path(old) != self.image_file(volume.name) and not self.image_file(volume.name).exists():
            return f"{volume.name} lives in {old}"
        return None

    # snapshots: the image copied while its file system is frozen

    def create_snapshot(self, volume: VolumeRef, snapshot: str) -> Details:
        target = self.snapshot_file(volume.name, snapshot)
        partial = target.with_name(target.name + PARTIAL)
        make_private(target.parent)
        if target.exists():
            raise Conflict(f"snapshot image {target} already exists")
        try:
            with self.consistent(volume):
                source = os.open(self.image_file(volume.name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    partial.unlink(missing_ok=True)  # a crashed attempt's
                    dest = os.open(partial, OPEN_NEW, 0o600)
                    try:
                        method = clone_or_copy(source, dest)
                        os.fsync(dest)
                    finally:
                        os.close(dest)
                finally:
                    os.close(source)
            os.rename(partial, target)
        except OSError as err:
            partial.unlink(missing_ok=True)
            raise Unavailable(
                f"cannot copy the image of volume {volume.name} to {target}: {err.strerror}; "
                "free space in image.path, then take the snapshot again"
            ) from None
        return {"image": str(target), "method": method}

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        self.snapshot_file(snapshot.volume.name, snapshot.name).unlink(missing_ok=True)

    @contextmanager
    def open_block_snapshot(self, snapshot: SnapshotRef, since: SnapshotRef | None) -> Iterator[BlockSource]:
        from app.fs.fiemap import changed_ranges  # only where a backup runs

        image = self.snapshot_file(snapshot.volume.name, snapshot.name)
        size = _regular_file_size(image)
        if size is None:
            raise Unavailable(f"the data of snapshot {snapshot.name} is missing: {image} does not exist")
        changed = None
        if since is not None and since.details.get("method") == "reflink" == snapshot.details.get("method"):
            earlier = self.snapshot_file(since.volume.name, since.name)
            if _regular_file_size(earlier) is not None:
                changed = changed_ranges(str(earlier), str(image))
        yield BlockSource(
            path=str(image),
            size=size,
            changed_ranges=changed,
            changed_since=since.name if changed is not None and since is not None else None,
        )


def _regular_file_size(path: Path) -> int | None:
    """The size of the regular file at `path`; None when there is none; a link or other type is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ENOTDIR:
            return None
        raise
    if not stat.S_ISREG(st.st_mode):
        raise Conflict(f"{path} is not a regular file (a link?); move it away: convoy keeps volume images there")
    return st.st_size
