"""Check a backup without restoring it: read every block and check its hash."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from app.errors import Damaged, NotFound
from app.json_types import JSONObject

from . import blocks, manifest, schemas
from .locks import StoreLock
from .objectstore import ObjectStore
from .objectstore.vfs import ALIGN, aligned_buffer
from .pipeline import BoundedPool, worker_count
from .progress import Progress
from .restore_target import TreeRules

WORKERS = 4
MAX_LISTED = 100


class BadBlock(TypedDict):
    block: str  # its digest
    files: list[str]  # the first MAX_LISTED files that use it
    reason: NotRequired[str]  # why it is corrupted; a missing block has none


@dataclass
class VerifyReport:
    backup: str
    volume: str
    blocks: int = 0
    bytes: int = 0
    missing: list[BadBlock] = field(default_factory=list)
    corrupted: list[BadBlock] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why a restore would refuse the manifest

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupted and not self.problems

    def as_dict(self) -> JSONObject:
        return {
            "backup": self.backup,
            "volume": self.volume,
            "ok": self.ok,
            "blocks": self.blocks,
            "bytes": self.bytes,
            "missing": self.missing[:MAX_LISTED],
            "corrupted": self.corrupted[:MAX_LISTED],
            "missing_count": len(self.missing),
            "corrupted_count": len(self.corrupted),
            "problems": self.problems,
        }

    def message(self) -> str:
        if self.ok:
            return f"backup {self.backup} of {self.volume} is intact: {self.blocks} blocks checked"
        parts = list(self.problems)
        for kind, items in (("missing", self.missing), ("corrupted", self.corrupted)):
            if items:
                first = items[0]
                parts.append(f"{len(items)} {kind} block(s) (first: {first['block']} used by {', '.join(first['files'][:3])})")
        return f"backup {self.backup} of {self.volume} is damaged: " + "; ".join(parts)


def verify_tree(
    store: ObjectStore, volume: str, backup: str, *, progress: Progress | None = None, workers: int | None = None
) -> VerifyReport:
    progress = progress or Progress()
    report = VerifyReport(backup=backup, volume=volume)
    with StoreLock(store, "shared", f"verify of backup {backup} of volume {volume}", optional=True):
        doc = manifest.read_backup(store, volume, backup)
        workers = worker_count(store, doc["block_size"], WORKERS, workers)
        _check_names(doc["entries"], f"backup {backup} of volume {volume}", report)
        users = _block_users(doc["entries"])
        report.blocks = len(users)
        progress.total_bytes = sum(length for _digest, length in users)
        lock = threading.Lock()

        def check(digest: str, length: int, files: list[str]) -> None:
            try:
                out = memoryview(aligned_buffer(length + ALIGN, "decoded"))
                blocks.decode_into(blocks.fetch(store, digest, length), digest, length, out, store.block_id_key)
            except NotFound:
                with lock:
                    report.missing.append({"block": digest, "files": files})
            except blocks.BlockDamaged as e:
                with lock:
                    report.corrupted.append({"block": digest, "files": files, "reason": str(e)})
            with lock:
                report.bytes += length
            progress.add(length)

        with BoundedPool(workers, max_pending=workers * 4, name="convoy-verify") as pool:
            for (digest, length), files in users.items():
                progress.check("the verify")
                pool.submit(check, digest, length, list(files))
    progress.finish()
    return report


def _block_users(entries: list[schemas.Entry]) -> dict[tuple[str, int], dict[str, None]]:
    """The files that use each (digest, length): a digest listed with two
    lengths is two checks, as a restore decodes it at each. Each file is
    named once and at most MAX_LISTED are kept (an ordered set as a dict)."""
    users: dict[tuple[str, int], dict[str, None]] = {}
    for entry in entries:
        for _offset, length, digest in manifest.file_blocks(entry):
            files = users.setdefault((digest, length), {})
            if len(files) < MAX_LISTED:
                files[entry["path"]] = None
    return users


def _check_names(entries: list[schemas.Entry], what: str, report: VerifyReport) -> None:
    """Apply the restore's own rules, so verify never calls intact what a restore refuses."""
    rules = TreeRules(what)
    try:
        for entry in entries:
            rules.check(entry["path"], entry["type"], manifest.link_target(entry))
    except Damaged as e:
        report.problems.append(str(e))
