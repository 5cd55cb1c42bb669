"""Restore a backup (our format) into an empty directory.

Every block is fetched, decompressed and checked against its BLAKE3 name
before it is written; a missing or damaged block stops the restore with an
error naming the file. Files are created at their full size first, so the
ranges no block covers stay holes (sparse files come back sparse). Modes,
owners and mtimes are applied after the data (directories last, deepest
first), symlinks and hard links are recreated.
"""

from __future__ import annotations

import os
import threading

from app.errors import Conflict, InvalidInput, NotFound

from . import blocks, layout, manifest
from .locks import StoreLock
from .objectstore import ObjectStore
from .pipeline import BoundedPool
from .progress import Progress

WORKERS = 4


def prepare_target(target: str) -> None:
    """The restore target must be an empty (or not yet existing) directory."""
    if os.path.lexists(target):
        if not os.path.isdir(target) or os.path.islink(target):
            raise InvalidInput(f"restore target {target} is not a directory")
        if os.listdir(target):
            raise Conflict(f"restore target {target} is not empty; restore into a new volume")
    else:
        os.makedirs(target)


def _safe_join(root: str, rel: str) -> str:
    if rel == ".":
        return root
    if rel.startswith("/") or any(p in ("", ".", "..") for p in rel.split("/")):
        raise Conflict(f"backup manifest holds an unsafe path {rel!r}; refusing to restore it")
    return os.path.join(root, rel)


class _BlockWriter:
    def __init__(self, store: ObjectStore, progress: Progress):
        self.store = store
        self.progress = progress

    def __call__(self, fd: int, rel: str, offset: int, length: int, digest: str) -> None:
        try:
            stored = self.store.get(layout.block_key(digest))
        except NotFound:
            raise NotFound(
                f"block {digest} of {rel} (offset {offset}) is missing from {self.store.url}; "
                "this backup cannot be restored completely"
            ) from None
        try:
            data = blocks.decode(stored, digest, length)
        except blocks.BlockDamaged as e:
            raise blocks.BlockDamaged(f"{e} (in {rel} at offset {offset}); this backup cannot be restored completely") from None
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n
        self.progress.add(length)


class _FileHandles:
    """Open file descriptors, closed when the last block of a file is written."""

    def __init__(self):
        self.lock = threading.Lock()
        self.remaining: dict[int, int] = {}

    def open(self, path: str, mode: int, count: int, size: int) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        os.ftruncate(fd, size)
        if count == 0:
            os.close(fd)
            return -1
        with self.lock:
            self.remaining[fd] = count
        return fd

    def done(self, fd: int) -> None:
        with self.lock:
            self.remaining[fd] -= 1
            last = self.remaining[fd] == 0
            if last:
                del self.remaining[fd]
        if last:
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self.remaining):
            try:
                os.close(fd)
            except OSError:
                pass
        self.remaining.clear()


def _apply_metadata(path: str, entry: dict, is_link: bool) -> None:
    try:
        os.chown(path, entry["uid"], entry["gid"], follow_symlinks=False)
    except PermissionError:
        pass  # not root: keep our own ownership
    if not is_link:
        os.chmod(path, entry["mode"])
    os.utime(path, ns=(entry["mtime_ns"], entry["mtime_ns"]), follow_symlinks=False)


def restore_tree(
    store: ObjectStore,
    volume: str,
    backup: str,
    target: str,
    *,
    progress: Progress | None = None,
    workers: int = WORKERS,
) -> dict:
    """Restore our-format backup `backup` of `volume` into `target`; return its summary."""
    progress = progress or Progress()
    with StoreLock(store, "shared", f"restore of backup {backup} of volume {volume}"):
        doc = manifest.read_backup(store, volume, backup)
        prepare_target(target)
        entries = doc["entries"]
        progress.total_bytes = sum(b[1] for e in entries for b in e.get("blocks", ()))
        writer = _BlockWriter(store, progress)
        handles = _FileHandles()
        try:
            with BoundedPool(workers, max_pending=workers * 4, name="convoy-restore") as pool:
                for entry in entries:
                    progress.check("the restore")
                    path = _safe_join(target, entry["path"])
                    kind = entry["type"]
                    if kind == "dir":
                        if entry["path"] != ".":
                            os.mkdir(path, 0o700)
                    elif kind == "file":
                        blist = entry.get("blocks", ())
                        fd = handles.open(path, entry["mode"], len(blist), entry["size"])
                        for offset, length, digest in blist:
                            pool.submit(_write_then_release, writer, handles, fd, entry["path"], offset, length, digest)
                    elif kind == "symlink":
                        os.symlink(entry["target"], path)
                    elif kind == "hardlink":
                        os.link(_safe_join(target, entry["target"]), path)
                    elif kind == "fifo":
                        os.mkfifo(path, 0o600)
                    elif kind in ("chardev", "blockdev"):
                        import stat as _stat

                        flag = _stat.S_IFCHR if kind == "chardev" else _stat.S_IFBLK
                        os.mknod(path, 0o600 | flag, entry["rdev"])
        finally:
            handles.close_all()
        progress.check("the restore")
        # metadata after data; directories deepest first so their mtimes stick
        dirs = []
        for entry in entries:
            if entry["type"] == "dir":
                dirs.append(entry)
            elif entry["type"] != "hardlink":
                _apply_metadata(_safe_join(target, entry["path"]), entry, entry["type"] == "symlink")
        for entry in sorted(dirs, key=lambda e: e["path"].count("/") + (e["path"] != "."), reverse=True):
            _apply_metadata(_safe_join(target, entry["path"]), entry, False)
        progress.finish()
        return manifest.summary(doc)


def _write_then_release(writer: _BlockWriter, handles: _FileHandles, fd: int, rel: str, offset: int, length: int, digest: str) -> None:
    try:
        writer(fd, rel, offset, length, digest)
    finally:
        handles.done(fd)
