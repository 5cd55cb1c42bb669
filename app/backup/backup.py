"""Back up a snapshot directory into a store, incrementally.

Only what changed since the last backup of the same volume in the same
store is read and uploaded:
- a file whose type, size and mtime match the previous backup's entry is not
  read at all: its block map is copied;
- a changed file is cut into fixed blocks along its data ranges
  (SEEK_DATA/SEEK_HOLE: holes are never read or stored); when the previous
  backup's snapshot is still on disk as a reflink sibling, FIEMAP tells which
  blocks still share their physical extents with it, and those are not read;
- a block whose hash the store already has is not uploaded again (on S3,
  after a run of new blocks only some are asked about: lookups.py).

Data flows through a bounded pipeline: this thread reads blocks in file
order (sequential reads, kernel read-ahead), worker threads hash, compress
and upload them (BLAKE3, zstd and I/O release the GIL). Blocks are made
durable (`store.sync()`) before the manifest that names them is written, and
the manifest is the commit point: a backup killed before it leaves only
unreferenced blocks, which the next try reuses and garbage collection drops.
"""

from __future__ import annotations

import mmap
import os
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from app.errors import Conflict, NotFound
from app.fs import fiemap, sparse
from app.fs.readahead import ReadAhead
from app.json_types import JSONObject
from app.names import check_name

from . import blocks, index, layout, manifest, schemas, tree
from .locks import StoreLock
from .lookups import BlockLookups
from .objectstore import ObjectStore
from .pipeline import BLOCK_MEMORY, BoundedPool, worker_count
from .progress import Progress
from .schemas import Block

WORKERS = 3


@dataclass(frozen=True)
class SnapshotSource:
    """A snapshot as the backup engine sees it: a name and a directory."""

    name: str
    path: str
    created_at: str | None = None  # RFC 3339; the directory's mtime when None


def new_backup_name() -> str:
    return "backup-" + secrets.token_hex(8)


def _mtime_rfc3339(path: str) -> str:
    t = os.stat(path).st_mtime
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _FilePlan:
    entry: JSONObject  # a tree entry, its block map filled in as blocks are read
    path: str
    reads: list[tuple[int, int, int]]  # (slot index, offset, length)


class _Uploader:
    """Hash, dedup, compress and put one block; shared by the worker threads."""

    def __init__(self, store: ObjectStore, known: set[str], progress: Progress, block_size: int):
        self.store = store
        self.known = known
        self.progress = progress
        self.lock = threading.Lock()
        self.lookups = BlockLookups(store.sampled_lookups)
        self.zero_digest = blocks.digest(bytes(block_size), store.block_id_key)
        self.block_size = block_size
        self.new_blocks = 0
        self.new_bytes = 0
        self.stored_bytes = 0

    def __call__(self, slots: list[Block | None], index: int, offset: int, data: bytes | memoryview) -> None:
        digest = blocks.digest(data, self.store.block_id_key)
        length = len(data)
        if length == self.block_size and digest == self.zero_digest:
            slots[index] = None  # written zeros: stored as a hole
            self.progress.add(length)
            return
        slots[index] = (offset, length, digest)
        with self.lock:
            if digest in self.known:
                self.progress.add(length)
                return
            self.known.add(digest)
        key = layout.block_key(digest)
        if self.lookups.should_ask():
            present = self.store.exists(key)
            self.lookups.answered(present)
            if present:
                self.progress.add(length)
                return
        stored = blocks.encode(data)
        self.store.put(key, stored)
        with self.lock:
            self.new_blocks += 1
            self.new_bytes += length
            self.stored_bytes += blocks.stored_size(stored)
        self.progress.add(length)


def create_backup(
    store: ObjectStore,
    volume: str,
    snapshot: SnapshotSource,
    *,
    backup_name: str | None = None,
    previous_snapshot: SnapshotSource | None = None,
    find_snapshot: Callable[[str], SnapshotSource | None] | None = None,
    volume_size: int | None = None,
    driver: str = "vfs",
    progress: Progress | None = None,
    workers: int | None = None,
) -> JSONObject:
    """Back up `snapshot.path` as a new backup of `volume`; return its summary.

    `previous_snapshot`: the snapshot that the volume's last backup in this
    store was made from, if it still exists on this host; used for FIEMAP
    change detection only when its name matches the last backup's.
    `find_snapshot(name)`: instead of `previous_snapshot`, a look-up of that
    snapshot by the name the last backup records (None when it is gone), so
    the caller need not read the store to learn it.
    """
    check_name("volume", volume)
    name = check_name("backup", backup_name) if backup_name else new_backup_name()
    progress = progress or Progress()
    config = manifest.ensure_config(store)
    bs = config.block_size
    workers = worker_count(store, bs, WORKERS, workers)
    with StoreLock(store, "shared", f"backup {name} of volume {volume}") as lock:
        if store.exists(layout.backup_key(volume, name)):
            raise Conflict(f"backup {name} of volume {volume} already exists in {store.url}: choose another name")
        previous = manifest.latest_backup(store, volume)
        if previous_snapshot is None and find_snapshot is not None and previous and (name_then := previous.get("snapshot")):
            previous_snapshot = find_snapshot(name_then)
        prev_entries: dict[str, schemas.Entry] = {}
        known: set[str] = set()
        if previous:
            prev_entries = {e["path"]: e for e in previous["entries"]}
            known.update(manifest.block_digests(previous))
        use_fiemap = bool(
            previous
            and previous_snapshot
            and previous.get("snapshot") == previous_snapshot.name
            and os.path.isdir(previous_snapshot.path)
        )
        if previous and previous.get("block_size") != bs:
            prev_entries = {}

        entries: list[JSONObject] = []
        plans: list[_FilePlan] = []
        stats = {"files": 0, "bytes": 0, "data_bytes": 0, "unchanged_files": 0, "fiemap_skipped_bytes": 0}
        for entry, _st in tree.walk(snapshot.path):
            progress.check("the backup")
            entries.append(entry)
            if entry["type"] != "file":
                continue
            stats["files"] += 1
            stats["bytes"] += entry["size"]
            old = prev_entries.get(entry["path"])
            if (
                old is not None
                and old["type"] == "file"
                and old["size"] == entry["size"]
                and old["mtime_ns"] == entry["mtime_ns"]
            ):
                entry["blocks"] = old["blocks"]
                stats["unchanged_files"] += 1
                stats["data_bytes"] += sum(b[1] for b in old["blocks"])
                continue
            path = os.path.join(snapshot.path, entry["path"])
            prev_root = previous_snapshot.path if use_fiemap and previous_snapshot else None
            plan = _plan_file(entry, path, old, prev_root, bs, stats)
            if plan.reads:
                plans.append(plan)
        return upload_and_commit(
            store,
            lock,
            plans,
            known,
            progress,
            workers,
            {
                "name": name,
                "volume": volume,
                "snapshot": snapshot.name,
                "snapshot_created_at": snapshot.created_at or _mtime_rfc3339(snapshot.path),
                "source": "tree",
                "driver": driver,
                "volume_size": volume_size,
                "block_size": bs,
                "base_backup": previous["name"] if previous else None,
                "stats": stats,
                "entries": entries,
            },
        )


def upload_and_commit(
    store: ObjectStore,
    lock: StoreLock,
    plans: list[_FilePlan],
    known: set[str],
    progress: Progress,
    workers: int,
    doc: JSONObject,
) -> JSONObject:
    """Read and upload the planned blocks, then commit the manifest `doc`; return its summary."""
    progress.total_bytes = sum(length for p in plans for _i, _o, length in p.reads)
    uploader = _Uploader(store, known, progress, doc["block_size"])
    # blocks read ahead of the workers, within the same memory bound as the workers
    pending = max(workers, min(workers * 4, BLOCK_MEMORY // doc["block_size"]))
    buffers = _Buffers(pending + 2, doc["block_size"])
    with BoundedPool(workers, max_pending=pending) as pool:
        for plan in plans:
            _read_file(plan, pool, uploader, progress, buffers)
    for plan in plans:
        plan.entry["blocks"] = [b for b in plan.entry["blocks"] if b is not None]
    progress.check("the backup")

    store.sync()  # every block durable before the manifest names it
    lock.check_held()
    doc = {
        "format": manifest.BACKUP_FORMAT,
        "version": manifest.FORMAT_VERSION,
        "created_at": manifest.now_rfc3339(),
        "block_hash": manifest.block_hash_of(store),
        "compression": "zstd",
        **doc,
        "stats": {
            **doc["stats"],
            "read_bytes": progress.total_bytes,
            "new_blocks": uploader.new_blocks,
            "new_bytes": uploader.new_bytes,
            "stored_bytes": uploader.stored_bytes,
        },
    }
    volume_hints = {"size": doc.get("volume_size"), "driver": doc.get("driver", "")}
    # volume.json is rewritten before and after the manifest: an index that saw
    # neither write cannot be trusted (index.py), also when this process dies between
    manifest.write_volume(store, doc["volume"], **volume_hints, last_backup=None)
    manifest.write_backup(store, doc)
    store.sync()
    manifest.write_volume(store, doc["volume"], **volume_hints, last_backup=doc["name"])
    summary = manifest.summary(doc)
    index.update(store, doc["volume"], known={doc["name"]: summary})
    progress.finish()
    return summary


def _plan_file(
    entry: JSONObject, path: str, old: schemas.Entry | None, prev_root: str | None, bs: int, stats: dict[str, int]
) -> _FilePlan:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        ranges = sparse.data_ranges(fd, entry["size"])
        cut = sparse.cut(ranges, bs)
        stats["data_bytes"] += sum(length for _o, length in cut)
        slots: list[Block | None] = [None] * len(cut)
        reads = []
        shared: list[tuple[int, int]] = []
        old_map: dict[tuple[int, int], str] = {}
        if prev_root and old is not None and old["type"] == "file":
            old_map = {(b[0], b[1]): b[2] for b in old["blocks"]}
            try:
                old_fd = os.open(os.path.join(prev_root, entry["path"]), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                old_fd = None
            if old_fd is not None:
                try:
                    shared = fiemap.shared_ranges(old_fd, fd)
                finally:
                    os.close(old_fd)
        for i, (offset, length) in enumerate(cut):
            digest = old_map.get((offset, length))
            if digest and fiemap.covered(shared, offset, offset + length):
                slots[i] = (offset, length, digest)
                stats["fiemap_skipped_bytes"] += length
            else:
                reads.append((i, offset, length))
        entry["blocks"] = slots
        return _FilePlan(entry=entry, path=path, reads=reads)
    finally:
        os.close(fd)


class _Buffers:
    """A fixed set of block buffers (anonymous mmaps, outside malloc), reused.

    Reading waits for a free buffer, so memory is `count * block_size`
    whatever the volume size, and no allocator churn can grow it.
    """

    def __init__(self, count: int, size: int):
        self._free: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(mmap.mmap(-1, size))

    def take(self) -> mmap.mmap:
        return self._free.get()

    def give(self, buf: mmap.mmap) -> None:
        self._free.put(buf)


def _upload_block(
    uploader: _Uploader, buffers: _Buffers, buf: mmap.mmap, slots: list[Block | None], index: int, offset: int, length: int
) -> None:
    try:
        uploader(slots, index, offset, memoryview(buf)[:length])
    finally:
        buffers.give(buf)


def _read_file(plan: _FilePlan, pool: BoundedPool, uploader: _Uploader, progress: Progress, buffers: _Buffers) -> None:
    try:
        fd = os.open(plan.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise NotFound(f"{plan.entry['path']} vanished from the snapshot during the backup") from None
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        ahead = ReadAhead(fd, ((offset, length) for _index, offset, length in plan.reads))
        slots = plan.entry["blocks"]
        for index, offset, length in plan.reads:
            progress.check("the backup")
            ahead.before_read(length)
            buf = buffers.take()
            try:
                view = memoryview(buf)[:length]
                got = 0
                while got < length:
                    n = os.preadv(fd, [view[got:]], offset + got)
                    if n <= 0:
                        break
                    got += n
                del view
                if got != length:
                    raise Conflict(
                        f"{plan.entry['path']} changed during the backup (shorter than expected); "
                        "back up a snapshot, not a live volume"
                    )
                pool.submit(_upload_block, uploader, buffers, buf, slots, index, offset, length)
            except BaseException:
                buffers.give(buf)
                raise
    finally:
        os.close(fd)
