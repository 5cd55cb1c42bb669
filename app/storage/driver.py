"""The interface every storage back-end implements.

Drivers know their storage and nothing of Docker, HTTP or the catalog. They
declare what they can do as data (`Capabilities`); the services read it and
never call a method a driver did not declare. Calls take typed references
(`VolumeRef`, `SnapshotRef`) that carry the details the driver returned
when it created the volume or snapshot (persisted in the catalog), so a
driver keeps no state of its own that the services would need.

Two kinds of back-end exist:
- tree back-ends (`VfsDriver`): a volume is a directory; a snapshot opens
  as a directory tree (`open_tree_snapshot`);
- block back-ends (subclasses of `app.storage.block.BlockDriver`): a volume
  is a block device with a file system; a snapshot opens as a block source
  (`open_block_snapshot`), read block by block by image backups.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from app.errors import InvalidInput

Details = dict[str, Any]  # a driver's own JSON-able record of a volume or snapshot
Ranges = list[tuple[int, int]]  # [start, end) byte ranges, sorted, not overlapping
#: writes an image to the device path it is given; returns the image's size in bytes
WriteImage = Callable[[str], int]


class SnapshotKind(StrEnum):
    """What a back-end's snapshot is, which decides how it is backed up."""

    NONE = "none"
    TREE = "tree"  # a directory tree: tree backups, file by file
    BLOCK = "block"  # a block device or image: image backups, block by block


@dataclass(frozen=True)
class Capabilities:
    snapshots: SnapshotKind
    #: the data lives outside this host (NFS, EBS, DigitalOcean): Docker's
    #: remove drops only this host's reference and keeps the data, as Convoy did
    data_outside_host: bool
    #: a volume must be attached to this host (a device appears) before it mounts
    needs_attach: bool = False
    #: `convoy resize` can grow a volume (its file system too)
    resize: bool = False


@dataclass(frozen=True)
class VolumeSpec:
    """What a create asks of a back-end, already validated by the service."""

    name: str
    size: int | None  # bytes; None when the user gave no size
    created_at: str  # RFC 3339, for back-ends that record volumes on shared storage
    options: dict[str, str] = field(default_factory=dict)  # back-end options


@dataclass(frozen=True)
class CreatedVolume:
    """What a driver made of a `VolumeSpec`."""

    details: Details
    #: its size in bytes when the driver decided it (a default size); None: the spec's
    size: int | None = None
    #: the storage existed before (a directory or image of that name): a failed
    #: restore into it must keep it, and a delete of data needs the user to ask
    adopted: bool = False


@dataclass(frozen=True)
class Resized:
    details: Details
    #: what the user must know: the resize did not finish everything yet (and when it will)
    warning: str | None = None


@dataclass(frozen=True)
class VolumeRef:
    name: str
    size: int | None
    details: Mapping[str, Any]


@dataclass(frozen=True)
class SnapshotRef:
    volume: VolumeRef
    name: str
    details: Mapping[str, Any]


@dataclass(frozen=True)
class BlockSource:
    """A block snapshot opened for reading by an image backup."""

    path: str  # a block device or an image file, readable while the source is open
    size: int
    #: where the snapshot holds data; None: every byte of a device, SEEK_DATA on an image
    data_ranges: Ranges | None = None
    #: what changed since `changed_since` (an earlier snapshot of the same volume);
    #: None: unknown (that snapshot is gone or the back-end cannot tell): a full read
    changed_ranges: Ranges | None = None
    changed_since: str | None = None


@dataclass(frozen=True)
class SharedVolume:
    """A volume recorded on shared storage (NFS, a cloud), possibly by another host."""

    name: str
    size: int | None
    created_at: str  # RFC 3339
    details: Details


class StorageDriver(ABC):
    """One back-end. One instance per daemon, built from `--driver-opts`."""

    #: the name users give with `--drivers` and `-o driver=`
    name: ClassVar[str]
    #: the prefix of its `--driver-opts` keys when it is not the name (`do.` for digitalocean, as Convoy spelled them)
    option_prefix: ClassVar[str | None] = None
    #: per-volume options accepted on create besides `size` and `driver`,
    #: mapped to a one-line description shown when an option is unknown
    volume_options: ClassVar[dict[str, str]] = {}
    #: daemon `--driver-opts` keys this driver reads, with descriptions
    daemon_options: ClassVar[dict[str, str]] = {}
    #: the URL scheme of backups that are this back-end's own snapshots (ebs://), if it has them
    native_backup_scheme: ClassVar[str | None] = None

    def __init__(self, options: dict[str, str], state_dir: Path):
        unknown = set(options) - set(self.daemon_options)
        if unknown:
            raise InvalidInput(
                f"unknown {self.name} driver option(s) {', '.join(sorted(unknown))}: "
                f"valid are {', '.join(sorted(self.daemon_options))}"
            )
        self.options = options
        self.state_dir = state_dir

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this back-end can do; read by the services before any call."""

    @property
    def scope(self) -> str:
        """Docker's Capabilities scope: "global" when every host sees the same volume."""
        return "global" if self.capabilities.data_outside_host else "local"

    def private_paths(self) -> list[Path]:
        """Directories this back-end keeps its storage in: never a place for a user's mount."""
        return []

    def start(self) -> None:  # noqa: B027 - optional: most back-ends have nothing to prepare
        """Slow preparation (scans, cloud calls, cleaning up what a crash left half-made).

        Runs after the sockets listen."""

    @abstractmethod
    def create_volume(self, spec: VolumeSpec) -> CreatedVolume:
        """Create (or adopt) the volume's storage."""

    @abstractmethod
    def delete_volume(self, volume: VolumeRef, keep_data: bool) -> None:
        """Forget the volume; also destroy its data unless `keep_data`."""

    @abstractmethod
    def mount(self, volume: VolumeRef, target: Path) -> None:
        """Make the volume's file system appear at `target` (an existing directory)."""

    @abstractmethod
    def unmount(self, volume: VolumeRef, target: Path) -> None:
        """Undo `mount`. Must succeed when `target` is already unmounted."""

    def recover(self, volume: VolumeRef, in_use: bool) -> None:  # noqa: B027 - optional: only attachments need it
        """After a restart: release what a volume no reference holds still holds (an attachment).

        Called at start for every volume, before mounts are restored; `in_use`
        says whether mount references survive, so it will be mounted again.
        """

    def status(self, volume: VolumeRef) -> Details:
        """Back-end details shown by `docker volume inspect` and `convoy inspect`."""
        return dict(volume.details)

    def settings_problem(self, volume: VolumeRef) -> str | None:
        """Why this volume's data is unreachable under the current settings, or None.

        Called at start for every volume in the catalog; any answer stops the
        start, so a changed setting never silently hides existing volumes.
        """
        return None

    def shared_volumes(self) -> list[SharedVolume]:
        """Volumes recorded on shared storage, so every host that shares it lists them.

        May be slow (NFS, a cloud API): the service calls it off the request
        path (`app.shared_volumes.SharedVolumeCache`)."""
        return []

    def shared_volume(self, name: str) -> SharedVolume | None:
        """The volume `name` if shared storage records it (a create asks before making one).

        Reads everything by default; a back-end that can look one name up cheaply overrides it."""
        return next((volume for volume in self.shared_volumes() if volume.name == name), None)

    # What only some back-ends do. The services check `capabilities` first
    # and never reach these defaults, which name the back-end if they are.

    def _unsupported(self, what: str) -> InvalidInput:
        return InvalidInput(f"the {self.name} back-end does not support {what}")

    def create_snapshot(self, volume: VolumeRef, snapshot: str) -> Details:
        """Take a point-in-time copy of the volume; return the snapshot's details."""
        raise self._unsupported("snapshots")

    def finish_snapshot(self, snapshot: SnapshotRef) -> Details:
        """Wait until a snapshot that create_snapshot returned is complete (a cloud copies it in the background)
        and return its final details. Past the driver's deadline: Unavailable, the snapshot stays as it is; a
        snapshot the back-end gave up on: SnapshotFailed. A back-end whose snapshots are complete at once keeps
        this default."""
        return dict(snapshot.details)

    def snapshot_progress(self, snapshot: SnapshotRef) -> Details:
        """How far a snapshot still being completed is ({"state": ..., "progress": ...}); {} when complete."""
        return {}

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        raise self._unsupported("snapshots")

    def open_tree_snapshot(self, snapshot: SnapshotRef) -> AbstractContextManager[Path]:
        """A directory that holds the snapshot's files, read-only by contract (tree back-ends)."""
        raise self._unsupported("reading snapshots as directory trees")

    def open_block_snapshot(self, snapshot: SnapshotRef, since: SnapshotRef | None) -> AbstractContextManager[BlockSource]:
        """The snapshot as a block source, with the ranges changed since `since` when known (block back-ends)."""
        raise self._unsupported("reading snapshots as block devices")

    def resize(self, volume: VolumeRef, size: int) -> Resized:
        """Grow the volume to `size` bytes, and its file system (online where it is mounted)."""
        raise self._unsupported("resizing volumes")

    # Backups that are the back-end's own snapshots (`native_backup_scheme`): the
    # snapshot is kept as the backup, and a restore creates a volume from it.

    def keep_as_backup(self, snapshot: SnapshotRef) -> str:
        """Keep the snapshot as a backup (a later snapshot delete leaves it); return its URL."""
        raise self._unsupported("backups of its own kind")

    def native_backup_options(self, url: str) -> dict[str, str]:
        """The create options that make a volume from the native backup `url`."""
        raise self._unsupported("backups of its own kind")

    def list_native_backups(self, volume: str | None) -> list[Details]:
        raise self._unsupported("backups of its own kind")

    def delete_native_backup(self, url: str) -> None:
        raise self._unsupported("backups of its own kind")

    def write_image(self, volume: VolumeRef, write: WriteImage) -> Details:
        """Let `write` fill the volume's device with an image (a restore); block back-ends only."""
        raise self._unsupported("restoring block images")

