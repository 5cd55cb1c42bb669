"""VFS back-end: a volume is the directory `<vfs.path>/<name>`.

`vfs.path` may be a local directory or an NFS mount shared by several hosts.
Each volume's record is also written to `<vfs.path>/.convoy/volumes/`, so
every host with the same `vfs.path` lists it. `.convoy` can never clash with
a volume, whose name starts with a letter or digit.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

from app import mounts
from app.errors import InvalidInput, Unavailable
from app.fsutil import write_json_atomic
from app.storage.driver import SharedVolume, StorageDriver, VolumeSpec
from app.storage.vfs_snapshot import snapshot_directory, supports_reflink

log = logging.getLogger(__name__)

# file systems whose data lives outside this host: Docker's remove keeps it
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "9p"}


class VfsDriver(StorageDriver):
    name = "vfs"
    daemon_options = {
        "vfs.path": "directory that holds the volumes (local or an NFS mount); default <root>/vfs",
        "vfs.shared": "true/false: treat vfs.path as shared between hosts (default: detected, true on NFS)",
    }

    def __init__(self, options: dict[str, str], state_dir: Path):
        super().__init__(options, state_dir)
        unknown = set(options) - set(self.daemon_options)
        if unknown:
            raise InvalidInput(
                f"unknown vfs driver option(s) {', '.join(sorted(unknown))}: "
                f"valid are {', '.join(sorted(self.daemon_options))}"
            )
        self.path = Path(options.get("vfs.path") or state_dir / "vfs").absolute()
        self.records_dir = self.path / ".convoy" / "volumes"
        # on the same file system as the volumes, so snapshots can be reflinks
        self.snapshots_dir = self.path / ".convoy" / "snapshots"
        shared = options.get("vfs.shared", "").strip().lower()
        if shared not in ("", "true", "false"):
            raise InvalidInput(f"vfs.shared={shared!r}: use true or false")
        self._shared = None if not shared else shared == "true"
        self._snapshot_method: str | None = None

    @property
    def data_outside_host(self) -> bool:
        if self._shared is None:
            self._shared = mounts.filesystem_type(self.path) in NETWORK_FILESYSTEMS
        return self._shared

    def start(self) -> None:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        _ = self.data_outside_host  # detect once, off the request path
        _ = self.snapshot_method
        for partial in self.snapshots_dir.glob("*/*.partial"):
            log.info("removing %s: a snapshot interrupted by a crash", partial)
            shutil.rmtree(partial, ignore_errors=True)

    @property
    def snapshot_method(self) -> str:
        """How snapshots are taken here: "reflink" (instant) or "copy"."""
        if self._snapshot_method is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._snapshot_method = "reflink" if supports_reflink(str(self.path)) else "copy"
        return self._snapshot_method

    def volume_dir(self, name: str) -> Path:
        return self.path / name

    def create_volume(self, spec: VolumeSpec) -> dict:
        directory = self.volume_dir(spec.name)
        adopted = directory.is_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise Unavailable(f"cannot create {directory}: {err.strerror}; check that vfs.path is writable")
        # the record on the shared path is what lets other hosts list it
        write_json_atomic(
            self.records_dir / f"{spec.name}.json",
            {"name": spec.name, "size": spec.size, "created_at": spec.created_at, "driver": self.name},
        )
        return {"path": str(directory), "vfs_path": str(self.path), "adopted": adopted}

    def delete_volume(self, name: str, details: dict, keep_data: bool) -> None:
        (self.records_dir / f"{name}.json").unlink(missing_ok=True)
        if not keep_data and self.volume_dir(name).exists():
            shutil.rmtree(self.volume_dir(name))

    def mount(self, name: str, details: dict, target: Path) -> None:
        directory = self.volume_dir(name)
        if not directory.is_dir():
            raise Unavailable(
                f"the data of volume {name} is missing: {directory} does not exist; "
                f"restore it there or delete the volume with `convoy delete -r {name}`"
            )
        mounts.bind_mount(directory, target)

    def unmount(self, name: str, details: dict, target: Path) -> None:
        mounts.unmount(target)

    def status(self, name: str, details: dict) -> dict:
        return {"path": str(self.volume_dir(name)), "shared": self.data_outside_host, "snapshots": self.snapshot_method}

    def settings_problem(self, name: str, details: dict) -> str | None:
        old = details.get("vfs_path")
        if old and Path(old) != self.path and not self.volume_dir(name).is_dir():
            return f"{name} lives in {old}"
        return None

    def shared_volumes(self) -> list[SharedVolume]:
        found = []
        if not self.records_dir.is_dir():
            return found
        for record_file in self.records_dir.glob("*.json"):
            try:
                record = json.loads(record_file.read_text())
                name = record["name"]
            except (OSError, ValueError, KeyError) as err:
                log.warning("skipping unreadable volume record %s: %s", record_file, err)
                continue
            if self.volume_dir(name).is_dir():
                found.append(
                    SharedVolume(
                        name=name,
                        size=record.get("size"),
                        created_at=record.get("created_at", ""),
                        details={"path": str(self.volume_dir(name)), "vfs_path": str(self.path), "adopted": True},
                    )
                )
        return found

    # snapshots: a reflink copy of the volume directory where the file
    # system can (XFS, btrfs: instant), a plain copy elsewhere

    def snapshot_dir(self, name: str, snapshot: str) -> Path:
        return self.snapshots_dir / name / snapshot

    def create_snapshot(self, name: str, details: dict, snapshot: str) -> dict:
        final = self.snapshot_dir(name, snapshot)
        partial = final.with_name(final.name + ".partial")  # a crash leaves only this
        final.parent.mkdir(parents=True, exist_ok=True)
        if partial.exists():
            shutil.rmtree(partial)
        method = snapshot_directory(str(self.volume_dir(name)), str(partial))
        partial.rename(final)
        if method == "empty":  # no file data to clone: say what a file would get
            method = self.snapshot_method
        return {"path": str(final), "method": method}

    def delete_snapshot(self, name: str, details: dict, snapshot: str, snapshot_details: dict) -> None:
        directory = self.snapshot_dir(name, snapshot)
        if directory.exists():
            shutil.rmtree(directory)

    @contextmanager
    def open_snapshot(self, name: str, details: dict, snapshot: str, snapshot_details: dict):
        directory = self.snapshot_dir(name, snapshot)
        if not directory.is_dir():
            raise Unavailable(f"the data of snapshot {snapshot} is missing: {directory} does not exist")
        yield directory
