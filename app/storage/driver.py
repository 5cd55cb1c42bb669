"""The interface every storage back-end implements.

Drivers know their storage and nothing of Docker, HTTP or the catalog. The
volume service calls them with the name of a volume and the `details` dict
the driver returned when it created the volume (persisted in the catalog),
so a driver keeps no state of its own that the service would need.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

from app.errors import InvalidInput


@dataclass(frozen=True)
class VolumeSpec:
    """What a create asks of a back-end, already validated by the service."""

    name: str
    size: int | None  # bytes; None when the user gave no size
    created_at: str  # RFC 3339, for back-ends that record volumes on shared storage
    options: dict[str, str] = field(default_factory=dict)  # back-end options


@dataclass(frozen=True)
class SharedVolume:
    """A volume recorded on shared storage (NFS, a cloud), possibly by another host."""

    name: str
    size: int | None
    created_at: str  # RFC 3339
    details: dict


class StorageDriver(ABC):
    """One back-end. One instance per daemon, built from `--driver-opts`."""

    #: the name users give with `--drivers` and `-o driver=`
    name: ClassVar[str]
    #: per-volume options accepted on create besides `size` and `driver`,
    #: mapped to a one-line description shown when an option is unknown
    volume_options: ClassVar[dict[str, str]] = {}
    #: daemon `--driver-opts` keys this driver reads, with descriptions
    daemon_options: ClassVar[dict[str, str]] = {}

    def __init__(self, options: dict[str, str], state_dir: Path):
        self.options = options
        self.state_dir = state_dir

    @property
    def scope(self) -> str:
        """Docker's Capabilities scope: "global" when every host sees the same volume."""
        return "global" if self.data_outside_host else "local"

    @property
    @abstractmethod
    def data_outside_host(self) -> bool:
        """True when the data lives outside this host (NFS, EBS, DigitalOcean).

        For such back-ends a remove from Docker drops only this host's
        reference and keeps the data, as Convoy did.
        """

    def private_paths(self) -> list[Path]:
        """Directories this back-end keeps its storage in: never a place for a user's mount."""
        return []

    def start(self) -> None:
        """Slow preparation (scans, cloud calls, cleaning up what a crash left half-made).

        Runs after the sockets listen."""

    @abstractmethod
    def create_volume(self, spec: VolumeSpec) -> dict:
        """Create (or adopt) the volume's storage; return details to persist."""

    @abstractmethod
    def delete_volume(self, name: str, details: dict, keep_data: bool) -> None:
        """Forget the volume; also destroy its data unless `keep_data`."""

    @abstractmethod
    def mount(self, name: str, details: dict, target: Path) -> None:
        """Make the volume's file system appear at `target` (an existing directory)."""

    @abstractmethod
    def unmount(self, name: str, details: dict, target: Path) -> None:
        """Undo `mount`. Must succeed when `target` is already unmounted."""

    def status(self, name: str, details: dict) -> dict:
        """Back-end details shown by `docker volume inspect` and `convoy inspect`."""
        return dict(details)

    def settings_problem(self, name: str, details: dict) -> str | None:
        """Why this volume's data is unreachable under the current settings, or None.

        Called at start for every volume in the catalog; any answer stops the
        start, so a changed setting never silently hides existing volumes.
        """
        return None

    def shared_volumes(self) -> list[SharedVolume]:
        """Volumes recorded on shared storage, so every host that shares it lists them."""
        return []

    # Snapshots. A back-end that supports them overrides all three; the
    # backup engine reads a snapshot as a directory tree through
    # `open_snapshot`, whatever the back-end stores underneath.

    def create_snapshot(self, name: str, details: dict, snapshot: str) -> dict:
        """Take a point-in-time copy of the volume; return the snapshot's details."""
        raise InvalidInput(f"the {self.name} back-end does not support snapshots")

    def delete_snapshot(self, name: str, details: dict, snapshot: str, snapshot_details: dict) -> None:
        raise InvalidInput(f"the {self.name} back-end does not support snapshots")

    @contextmanager
    def open_snapshot(self, name: str, details: dict, snapshot: str, snapshot_details: dict) -> Iterator[Path]:
        """Yield a directory that holds the snapshot's files, read-only by contract."""
        raise InvalidInput(f"the {self.name} back-end does not support snapshots")
        yield Path()  # pragma: no cover - makes this a generator
