"""Backups of block volumes and image files ("image" backups).

For back-ends whose snapshot is a block device or an image file (device
mapper, EBS, a VFS image) rather than a directory tree. The manifest has
`"source": "image"` and one entry, path "image", type "file", with the image
size and its complete block map, so verify, delete and garbage collection
treat it like any other backup.

What is read:
- `data_ranges`: where the snapshot holds data (for a thin device, its
  mapped ranges); default: SEEK_DATA/SEEK_HOLE on an image file, the whole
  device otherwise. Nothing outside them is read or stored.
- `changed_ranges`: what changed since the snapshot of the volume's last
  backup in this store (thin_delta for device mapper, FIEMAP for reflinked
  images); blocks outside them keep the previous backup's hash unread. Only
  trusted when the caller names that previous snapshot (`previous_snapshot`)
  and it is the one the last backup was made from.
"""

from __future__ import annotations

import os
import stat

from app.errors import Conflict, Damaged, InvalidInput
from app.fs import sparse
from app.json_types import JSONObject
from app.names import check_name

from . import layout, manifest
from .backup import WORKERS, _FilePlan, new_backup_name, upload_and_commit
from .fd_refs import FdRefs
from .locks import StoreLock
from .objectstore import ObjectStore
from .pipeline import BoundedPool, worker_count
from .progress import Progress
from .restore import Lookahead, _BlockWriter, _write_then_release
from .restore_target import allocate_image, size_image
from .schemas import BackupDoc, Block, FileEntry

IMAGE_PATH = "image"


def _image_entry(doc: BackupDoc, volume: str) -> FileEntry:
    """The one file entry an image backup holds; anything else was not written by an image backup."""
    entries = doc["entries"]
    if len(entries) != 1 or entries[0]["type"] != "file":
        raise Damaged(
            f"backup {doc['name']} of {volume} says it is an image backup but does not hold exactly one image; "
            "it is damaged: restore an earlier backup"
        )
    return entries[0]


def _device_size(fd: int) -> int:
    return os.lseek(fd, 0, os.SEEK_END)


def create_image_backup(
    store: ObjectStore,
    volume: str,
    snapshot_name: str,
    image_path: str,
    *,
    snapshot_created_at: str | None = None,
    backup_name: str | None = None,
    data_ranges: list[tuple[int, int]] | None = None,
    changed_ranges: list[tuple[int, int]] | None = None,
    previous_snapshot: str | None = None,
    volume_size: int | None = None,
    driver: str = "",
    progress: Progress | None = None,
    workers: int | None = None,
) -> JSONObject:
    """Back up the block device or image file `image_path` as a backup of `volume`."""
    check_name("volume", volume)
    name = check_name("backup", backup_name) if backup_name else new_backup_name()
    progress = progress or Progress()
    config = manifest.ensure_config(store)
    bs = config.block_size
    workers = worker_count(store, bs, WORKERS, workers)
    fd = os.open(image_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise InvalidInput(f"{image_path} is neither an image file nor a block device")
        size = st.st_size if stat.S_ISREG(st.st_mode) else _device_size(fd)
        if data_ranges is None:
            data_ranges = sparse.data_ranges(fd, size) if stat.S_ISREG(st.st_mode) else [(0, size)]
    finally:
        os.close(fd)
    data_ranges = sorted((max(0, s), min(size, e)) for s, e in data_ranges if s < min(size, e))
    with StoreLock(store, "shared", f"backup {name} of volume {volume}") as lock:
        if store.exists(layout.backup_key(volume, name)):
            raise Conflict(f"backup {name} of volume {volume} already exists in {store.url}: choose another name")
        previous = manifest.latest_backup(store, volume)
        known = set(manifest.block_digests(previous)) if previous else set()
        old_map: dict[tuple[int, int], str] = {}
        trust_changes = bool(
            previous
            and changed_ranges is not None
            and previous_snapshot
            and previous.get("snapshot") == previous_snapshot
            and previous.get("source") == "image"
            and previous.get("block_size") == bs
        )
        if trust_changes and previous is not None:
            old_map = {(b[0], b[1]): b[2] for b in _image_entry(previous, volume)["blocks"]}
        cut = sparse.cut(data_ranges, bs)
        entry: JSONObject = {"path": IMAGE_PATH, "type": "file", "mode": 0o600, "uid": 0, "gid": 0, "mtime_ns": 0, "size": size}
        slots: list[Block | None] = [None] * len(cut)
        reads: list[tuple[int, int, int]] = []
        skipped = 0
        changed = sparse.Overlaps(changed_ranges or [])
        for i, (offset, length) in enumerate(cut):
            digest = old_map.get((offset, length))
            unchanged = trust_changes and not changed(offset, offset + length)
            if unchanged and digest:
                slots[i] = (offset, length, digest)
                skipped += length
            elif unchanged:
                # the previous backup holds no data here (zeros it stored as a hole, or a range it did not
                # map) and nothing changed since: zeros still, unread (a thin device's zeroed journal)
                skipped += length
            else:
                reads.append((i, offset, length))
        entry["blocks"] = slots
        stats = {
            "files": 1,
            "bytes": size,
            "data_bytes": sum(length for _o, length in cut),
            "unchanged_files": 0,
            "unchanged_bytes": skipped,
        }
        return upload_and_commit(
            store,
            lock,
            [_FilePlan(entry=entry, path=image_path, reads=reads)],
            known,
            progress,
            workers,
            {
                "name": name,
                "volume": volume,
                "snapshot": snapshot_name,
                "snapshot_created_at": snapshot_created_at,
                "source": "image",
                "driver": driver,
                "volume_size": volume_size or size,
                "block_size": bs,
                "base_backup": previous["name"] if previous else None,
                "stats": stats,
                "entries": [entry],
            },
        )


def restore_image_backup(
    store: ObjectStore, volume: str, backup: str, target: str, *, progress: Progress | None = None, workers: int | None = None
) -> JSONObject:
    """Write an image backup into `target`: a new image file (created sparse) or a block device.

    On a device, ranges no block covers are not written: a fresh thin volume
    reads zeros there; anything else must be zeroed by the caller first.
    """
    progress = progress or Progress()
    with StoreLock(store, "shared", f"restore of backup {backup} of volume {volume}", optional=True):
        doc = manifest.read_backup(store, volume, backup)
        if doc.get("source") != "image":
            raise Conflict(f"backup {backup} of {volume} is a directory backup; restore it into a directory volume")
        workers = worker_count(store, doc["block_size"], WORKERS, workers)
        entry = _image_entry(doc, volume)
        blist = entry["blocks"]
        progress.total_bytes = sum(b[1] for b in blist)
        is_device = os.path.exists(target) and stat.S_ISBLK(os.stat(target).st_mode)
        if not is_device and os.path.exists(target):
            raise Conflict(f"restore target {target} exists; give a new image path or a block device")
        flags = os.O_WRONLY | os.O_CLOEXEC | (0 if is_device else os.O_CREAT | os.O_EXCL)
        fd = os.open(target, flags, 0o600)
        direct_fd = -1
        try:
            if not is_device:
                size_image(fd, entry["size"], target, f"backup {backup} of {volume}")
                allocate_image(fd, blist, target)
            elif _device_size(fd) < entry["size"]:
                raise Conflict(f"block device {target} is smaller than the backed-up image ({entry['size']} bytes)")
            try:
                direct_fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC | os.O_DIRECT)
            except OSError:
                direct_fd = -1
            writer = _BlockWriter(store, progress)
            handles = FdRefs()
            fds = (fd, direct_fd)
            handles.hold(fds, len(blist) + 1)  # +1: closed by us below, not by the last block
            lookahead = Lookahead(store, (b[2] for b in blist))
            try:
                with BoundedPool(workers, max_pending=workers * 4, name="convoy-restore") as pool:
                    for offset, length, digest in blist:
                        progress.check("the restore")
                        pool.submit(_write_then_release, writer, handles, fds, IMAGE_PATH, offset, length, digest)
                        lookahead.advance()
            finally:
                lookahead.close()
            os.fsync(fd)
        finally:
            os.close(fd)
            if direct_fd >= 0:
                os.close(direct_fd)
        progress.finish()
        return {**manifest.summary(doc), "image_size": entry["size"]}
