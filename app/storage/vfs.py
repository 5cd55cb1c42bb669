"""VFS back-end: a volume is the directory `<vfs.path>/<name>`.

`vfs.path` may be a local directory or an NFS mount shared by several hosts.
Each volume's record is also written to `<vfs.path>/.convoy/volumes/`, so
every host with the same `vfs.path` lists it. `.convoy` can never clash with
a volume, whose name starts with a letter or digit.

Everything below `vfs.path` may have been written by another host or by a
container, so it is opened without following links (`app.storage.nofollow`)
and shared records are validated (`app.storage.shared_records`).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from app import mounts
from app.errors import Conflict, InvalidInput, Unavailable
from app.fs.clone import supports_reflink
from app.fs.sync import FsyncGroup
from app.private_dirs import fix_mode, make_private
from app.storage.driver import (
    Capabilities,
    CreatedVolume,
    Details,
    SharedVolume,
    SnapshotKind,
    SnapshotRef,
    StorageDriver,
    VolumeRef,
    VolumeSpec,
)
from app.storage.nofollow import (
    is_real_dir,
    lstat_at,
    open_child_dir,
    open_dir,
    planted,
    proc_path,
    remove_at,
    write_json_at,
)
from app.storage.shared_records import SharedRecord, SharedRecordReader, record_file
from app.storage.vfs_snapshot import snapshot_tree

log = logging.getLogger(__name__)

# file systems whose data lives outside this host: Docker's remove keeps it
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "9p"}
CONVOY_DIR = ".convoy"
RECORDS = (CONVOY_DIR, "volumes")
SNAPSHOTS = (CONVOY_DIR, "snapshots")
PARTIAL = ".partial"  # suffix of a snapshot being taken: a crash leaves only this
VOLUME_DIR_MODE = 0o755  # the volume's own root, as containers expect; its parent is 0700


class VfsDriver(StorageDriver):
    name = "vfs"
    daemon_options: ClassVar[dict[str, str]] = {
        "vfs.path": "directory that holds the volumes (local or an NFS mount); default <root>/vfs",
        "vfs.shared": "true/false: treat vfs.path as shared between hosts (default: detected, true on NFS)",
    }

    def __init__(self, options: dict[str, str], state_dir: Path):
        super().__init__(options, state_dir)
        self.path = Path(options.get("vfs.path") or state_dir / "vfs").absolute()
        self.records_dir = self.path.joinpath(*RECORDS)
        # on the same file system as the volumes, so snapshots can be reflinks
        self.snapshots_dir = self.path.joinpath(*SNAPSHOTS)
        shared = options.get("vfs.shared", "").strip().lower()
        if shared not in ("", "true", "false"):
            raise InvalidInput(f"vfs.shared={shared!r}: use true or false")
        self._shared = None if not shared else shared == "true"
        self._snapshot_method: str | None = None
        self._records = SharedRecordReader(str(self.records_dir))
        self._records_problem: str | None = None
        self._fsyncs = FsyncGroup()  # concurrent creates share their flushes

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(snapshots=SnapshotKind.TREE, data_outside_host=self.data_outside_host)

    @property
    def data_outside_host(self) -> bool:
        """True on NFS and other network file systems, unless vfs.shared says otherwise."""
        if self._shared is None:
            self._shared = mounts.filesystem_type(self.path) in NETWORK_FILESYSTEMS
        return self._shared

    def private_paths(self) -> list[Path]:
        return [self.path]

    def start(self) -> None:
        make_private(self.path)
        for parts in (RECORDS, SNAPSHOTS):
            for depth in range(1, len(parts) + 1):
                with open_dir(self.path, *parts[:depth], create=True) as fd:
                    fix_mode(self.path.joinpath(*parts[:depth]), fd)
        _ = self.data_outside_host  # detect once, off the request path
        _ = self.snapshot_method
        self._remove_partial_snapshots()

    def _remove_partial_snapshots(self) -> None:
        with open_dir(self.path, *SNAPSHOTS) as snapshots_fd:
            for volume in os.listdir(snapshots_fd):
                if not is_real_dir(snapshots_fd, volume):
                    continue  # never followed: a link here was not made by convoy
                try:  # below the descriptor checked above, never its path resolved again
                    volume_fd = open_child_dir(snapshots_fd, volume, self.snapshots_dir)
                except Conflict:
                    continue  # swapped for a link since the check: skipped the same way
                try:
                    for name in os.listdir(volume_fd):
                        if name.endswith(PARTIAL):
                            self._remove_partial(volume_fd, self.snapshots_dir / volume / name)
                finally:
                    os.close(volume_fd)

    @staticmethod
    def _remove_partial(volume_fd: int, where: Path) -> None:
        """A leftover of a crashed snapshot; a file or link in its place is unlinked, never followed."""
        log.info("removing %s: a snapshot interrupted by a crash", where)
        try:
            remove_at(volume_fd, where.name)
        except OSError as err:  # start-up goes on; create_snapshot tries again
            log.warning("cannot remove %s: %s", where, err.strerror)

    @property
    def snapshot_method(self) -> str:
        """How snapshots are taken here: "reflink" (instant) or "copy"."""
        if self._snapshot_method is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._snapshot_method = "reflink" if supports_reflink(str(self.path)) else "copy"
        return self._snapshot_method

    def volume_dir(self, name: str) -> Path:
        return self.path / name

    def create_volume(self, spec: VolumeSpec) -> CreatedVolume:
        directory = self.volume_dir(spec.name)
        try:
            make_private(self.path)
            with open_dir(self.path) as base:
                adopted = is_real_dir(base, spec.name)
                if not adopted:
                    if lstat_at(base, spec.name) is not None:
                        raise planted(directory)  # a link or a file where the volume would be
                    os.mkdir(spec.name, VOLUME_DIR_MODE, dir_fd=base)
                try:
                    # the record on the shared path is what lets other hosts list it; the
                    # new directory's entry is made durable with the record's, in a sync of
                    # both directories shared with the creates under way (Docker sends several)
                    with open_dir(self.path, *RECORDS, create=True) as records:
                        record = {"name": spec.name, "size": spec.size, "created_at": spec.created_at, "driver": self.name}
                        write_json_at(records, record_file(spec.name), record, self._fsyncs.fsync, durable_with=(base,))
                except BaseException:
                    if not adopted:  # undo: a failed create leaves nothing behind
                        os.rmdir(spec.name, dir_fd=base)
                    raise
        except OSError as err:
            raise Unavailable(f"cannot create {directory}: {err.strerror}; check that vfs.path is writable") from None
        return CreatedVolume({"path": str(directory), "vfs_path": str(self.path)}, adopted=adopted)

    def delete_volume(self, volume: VolumeRef, keep_data: bool) -> None:
        name = volume.name
        try:
            with open_dir(self.path, *RECORDS) as records:
                os.unlink(record_file(name), dir_fd=records)
        except FileNotFoundError:
            pass
        except Conflict as err:  # a planted records directory: nothing of ours to remove there
            log.warning("not removing the record of %s: %s", name, err)
        if keep_data:
            return
        with open_dir(self.path) as base:
            st = lstat_at(base, name)
            if st is None:
                return
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=base)  # fd-based: never leaves the tree through a link
            else:
                log.warning(
                    "%s is not a directory (a planted link?): removing the link, not what it points at", self.volume_dir(name)
                )
                os.unlink(name, dir_fd=base)

    @contextmanager
    def _volume_fd(self, name: str, readable: bool = False) -> Iterator[int]:
        """The volume's directory itself, never what a link in its place points at."""
        directory = self.volume_dir(name)
        flags = (os.O_RDONLY | os.O_DIRECTORY) if readable else os.O_PATH
        try:
            with open_dir(self.path) as base:
                fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=base)
        except FileNotFoundError:
            raise Unavailable(
                f"the data of volume {name} is missing: {directory} does not exist; "
                f"restore it there or delete the volume with `convoy delete -r {name}`"
            ) from None
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise planted(directory) from None
            raise
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):  # O_PATH opens a link itself
                raise planted(directory)
            yield fd
        finally:
            os.close(fd)

    def mount(self, volume: VolumeRef, target: Path) -> None:
        with self._volume_fd(volume.name) as fd:
            mounts.bind_mount(proc_path(fd), target)  # the directory opened, not a name resolved again

    def unmount(self, volume: VolumeRef, target: Path) -> None:
        mounts.unmount(target)

    def status(self, volume: VolumeRef) -> Details:
        return {"path": str(self.volume_dir(volume.name)), "shared": self.data_outside_host, "snapshots": self.snapshot_method}

    def settings_problem(self, volume: VolumeRef) -> str | None:
        old = volume.details.get("vfs_path")
        if old and Path(old) != self.path and not self.volume_dir(volume.name).is_dir():
            return f"{volume.name} lives in {old}"
        return None

    def shared_volumes(self) -> list[SharedVolume]:
        return self._read_records(lambda records: self._records.read_all(records)) or []

    def shared_volume(self, name: str) -> SharedVolume | None:
        found = self._read_records(lambda records: [r for r in [self._records.read_one(records, name)] if r])
        return found[0] if found else None

    def _read_records(self, read: Callable[[int], list[SharedRecord]]) -> list[SharedVolume] | None:
        """The volumes of the records `read` returns from the records directory; None when it cannot be read."""
        try:
            with open_dir(self.path, *RECORDS) as records, open_dir(self.path) as base:
                found = [
                    self._volume_of(record)
                    for record in read(records)
                    if is_real_dir(base, record.name)  # a record without its data is not a volume here
                ]
            self._records_problem = None
            return found
        except FileNotFoundError:
            return None
        except (Conflict, OSError) as err:  # a planted link, an NFS server that refuses: List must still answer
            problem = str(err)
            if problem != self._records_problem:  # once per new problem, not on every List
                log.warning("not listing the volume records in %s: %s", self.records_dir, problem)
                self._records_problem = problem
            return None

    def _volume_of(self, record: SharedRecord) -> SharedVolume:
        path = f"{self.path}/{record.name}"  # not self.volume_dir(): a Path per record is most of a read of 1,000
        return SharedVolume(record.name, record.size, record.created_at, {"path": path, "vfs_path": str(self.path)})

    # snapshots: a reflink copy of the volume directory where the file
    # system can (XFS, btrfs: instant), a plain copy elsewhere

    def snapshot_dir(self, name: str, snapshot: str) -> Path:
        return self.snapshots_dir / name / snapshot

    def create_snapshot(self, volume: VolumeRef, snapshot: str) -> Details:
        name = volume.name
        partial = snapshot + PARTIAL
        with self._volume_fd(name, readable=True) as source, open_dir(self.path, *SNAPSHOTS, name, create=True) as parent:
            if lstat_at(parent, snapshot) is not None:
                raise Conflict(f"snapshot directory {self.snapshot_dir(name, snapshot)} already exists")
            remove_at(parent, partial)  # a crashed attempt's, whatever its type
            try:
                method = snapshot_tree(source, parent, partial, where=str(self.volume_dir(name)))
                os.rename(partial, snapshot, src_dir_fd=parent, dst_dir_fd=parent)
            except OSError as err:  # the host's storage (ENOSPC, EIO, EROFS), not the request
                raise Unavailable(
                    f"cannot copy volume {name} to {self.snapshot_dir(name, snapshot)}: {err.strerror or err}; "
                    "free space in vfs.path or fix its file system, then take the snapshot again"
                ) from None
        if method == "empty":  # no file data to clone: say what a file would get
            method = self.snapshot_method
        return {"path": str(self.snapshot_dir(name, snapshot)), "method": method}

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        try:
            with open_dir(self.path, *SNAPSHOTS, snapshot.volume.name) as parent:
                remove_at(parent, snapshot.name)
        except FileNotFoundError:
            pass

    @contextmanager
    def open_tree_snapshot(self, snapshot: SnapshotRef) -> Iterator[Path]:
        name = snapshot.volume.name
        directory = self.snapshot_dir(name, snapshot.name)
        try:
            # checked here: the snapshot directory (and each component from vfs.path down) is a real
            # directory, not a link. Below it the engine walks by path (os.scandir, lstat; files are
            # opened with O_NOFOLLOW on their last component only), trusting the copy convoy made.
            with open_dir(self.path, *SNAPSHOTS, name, snapshot.name):
                pass
        except FileNotFoundError:
            raise Unavailable(f"the data of snapshot {snapshot.name} is missing: {directory} does not exist") from None
        yield directory
