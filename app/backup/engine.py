"""What the volume service calls: one function per user command.

Each takes URLs as the user typed them (Convoy's `\\u0026` accepted), opens
the store, dispatches between our format and rancher/convoy 0.5.2's, and
returns plain dicts ready for JSON. Long operations take a `Progress` (with
an optional cancel event) and are meant to run in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.errors import Conflict, ConvoyError, Damaged, NotFound
from app.json_types import JSONObject
from app.names import check_name

from . import crypto, encryption, image, index, legacy_convoy, manifest
from .backup import SnapshotSource
from .backup import create_backup as _create_backup
from .delete import collect_garbage as _collect_garbage
from .delete import delete_backup as _delete_backup
from .encryption import unlock
from .objectstore import ObjectStore
from .objectstore import open_store as _open_plain
from .progress import Progress
from .restore import restore_tree
from .urls import BackupURL, StoreURL, parse_backup_url, parse_store_url
from .verify import verify_tree


def open_store(url: StoreURL, *, s3_endpoint: str | None, create: bool) -> ObjectStore:
    """The store a URL names, unlocked with the daemon's secret when it is encrypted."""
    store = _open_plain(url, s3_endpoint=s3_endpoint, create=create)
    try:
        return unlock(store)
    except BaseException:
        store.close()
        raise


def init_store(
    dest: str, *, secret: crypto.Secret | None, s3_endpoint: str | None = None, block_size: int | None = None
) -> JSONObject:
    """`convoy store init`: a new store at `dest`, encrypted under `secret` unless it is None,
    of blocks of `block_size` bytes (else the default of its kind of store)."""
    store_url = parse_store_url(dest)
    with _open_plain(store_url, s3_endpoint=s3_endpoint, create=True) as store:
        result = encryption.init_store(store, secret, block_size)
        if secret is not None:
            try:  # the daemon backs up with its own secret (encryption.py): say now whether it can
                unlock(store)
                result["daemon_can_open"] = True
            except ConvoyError as e:
                result["daemon_can_open"] = False
                result["warning"] = str(e).replace(". Nothing was read or written", "")
    return {**result, "url": str(store_url)}


def backup_url(store_url: StoreURL, volume: str, backup: str) -> str:
    return str(BackupURL(store=store_url, backup=backup, volume=volume))


def create_backup(
    dest: str,
    volume: str,
    snapshot: SnapshotSource,
    *,
    s3_endpoint: str | None = None,
    backup_name: str | None = None,
    previous_snapshot: SnapshotSource | None = None,
    find_snapshot: Callable[[str], SnapshotSource | None] | None = None,
    volume_size: int | None = None,
    driver: str = "vfs",
    progress: Progress | None = None,
) -> JSONObject:
    """Back up a snapshot directory to `dest`; the result has the backup `url`."""
    store_url = parse_store_url(dest)
    with open_store(store_url, s3_endpoint=s3_endpoint, create=True) as store:
        result = _create_backup(
            store,
            volume,
            snapshot,
            backup_name=backup_name,
            previous_snapshot=previous_snapshot,
            find_snapshot=find_snapshot,
            volume_size=volume_size,
            driver=driver,
            progress=progress,
        )
    return {"url": backup_url(store_url, volume, result["name"]), **result}


def _open_backup(url: str, s3_endpoint: str | None) -> tuple[BackupURL, ObjectStore]:
    parsed = parse_backup_url(url)
    return parsed, open_store(parsed.store, s3_endpoint=s3_endpoint, create=False)


def _kind(store: ObjectStore, parsed: BackupURL) -> str:
    from . import layout

    if store.exists(layout.backup_key(parsed.volume, parsed.backup)):
        return "ours"
    if legacy_convoy.has_backup(store, parsed.volume, parsed.backup):
        return "convoy"
    raise NotFound(
        f"backup {parsed.backup} of volume {parsed.volume} is not in {store.url}: "
        "check the URL with `convoy backup list`"
    )


def restore_backup(url: str, target: str, *, s3_endpoint: str | None = None, progress: Progress | None = None) -> JSONObject:
    """Restore a directory-tree backup into `target` (empty or absent)."""
    parsed, store = _open_backup(url, s3_endpoint)
    with store:
        if _kind(store, parsed) == "ours":
            result = restore_tree(store, parsed.volume, parsed.backup, target, progress=progress)
        else:
            result = legacy_convoy.restore_archive(store, parsed.volume, parsed.backup, target, progress=progress)
    return {"url": str(parsed), **result}


def create_image_backup(
    dest: str,
    volume: str,
    snapshot_name: str,
    image_path: str,
    *,
    s3_endpoint: str | None = None,
    **options: Any,  # image.create_image_backup's, passed through
) -> JSONObject:
    """Back up a block device or image file (see `image.create_image_backup` for options)."""
    store_url = parse_store_url(dest)
    with open_store(store_url, s3_endpoint=s3_endpoint, create=True) as store:
        result = image.create_image_backup(store, volume, snapshot_name, image_path, **options)
    return {"url": backup_url(store_url, volume, result["name"]), **result}


def restore_image(
    url: str, image_path: str, *, s3_endpoint: str | None = None, size: int | None = None, progress: Progress | None = None
) -> JSONObject:
    """Restore an image backup (ours, or Convoy 0.5.2 device-mapper) into a new image file or a block device."""
    parsed, store = _open_backup(url, s3_endpoint)
    with store:
        if _kind(store, parsed) == "ours":
            result = image.restore_image_backup(store, parsed.volume, parsed.backup, image_path, progress=progress)
        else:
            result = legacy_convoy.restore_blocks_to_image(store, parsed.volume, parsed.backup, image_path, size)
    return {"url": str(parsed), **result}


def last_backup_snapshot(dest: str, volume: str, *, s3_endpoint: str | None = None) -> str | None:
    """The snapshot the newest backup of `volume` in `dest` was made from (None: no backup yet).

    A block back-end reads only what changed since that snapshot, when it still has it."""
    with open_store(parse_store_url(dest), s3_endpoint=s3_endpoint, create=True) as store:
        previous = manifest.latest_backup(store, volume)
    snapshot = previous.get("snapshot") if previous else None
    return snapshot if isinstance(snapshot, str) else None


def inspect_backup(url: str, *, s3_endpoint: str | None = None) -> JSONObject:
    parsed, store = _open_backup(url, s3_endpoint)
    with store:
        if _kind(store, parsed) == "ours":
            doc = manifest.read_backup(store, parsed.volume, parsed.backup)
            return {"url": str(parsed), **manifest.summary(doc)}
        cfg = legacy_convoy.read_backup_cfg(store, parsed.volume, parsed.backup)
        return {"url": str(parsed), **legacy_convoy.summary(cfg, legacy_convoy.read_volume_cfg(store, parsed.volume))}


def list_backups(dest: str, *, volume: str | None = None, s3_endpoint: str | None = None) -> list[JSONObject]:
    """Every backup in a store (ours and Convoy's), oldest first within a volume."""
    store_url = parse_store_url(dest)
    if volume is not None:
        check_name("volume", volume)  # it becomes part of the keys listed (both formats use this rule)
    rows: list[JSONObject] = []
    with open_store(store_url, s3_endpoint=s3_endpoint, create=False) as store:
        found = list(index.list_summaries(store, volume).items())  # ours, through the per-volume indexes
        for vol, name in legacy_convoy.list_backups(store, volume):
            try:
                found.append(((vol, name), legacy_convoy.summary(legacy_convoy.read_backup_cfg(store, vol, name))))
            except (Damaged, Conflict, NotFound) as e:
                found.append(((vol, name), e))
        store_text = str(store_url)
        for (vol, name), outcome in found:
            # an unreadable backup is listed with why, not hidden
            doc = {"name": name, "volume": vol, "error": str(outcome)} if isinstance(outcome, ConvoyError) else outcome
            rows.append({"url": BackupURL.text(store_text, name, vol), **doc})
    rows.sort(key=lambda r: (r.get("volume") or "", str(r.get("created_at") or ""), r.get("name") or ""))
    return rows


def delete_backup(url: str, *, s3_endpoint: str | None = None) -> JSONObject:
    parsed, store = _open_backup(url, s3_endpoint)
    with store:
        if _kind(store, parsed) == "convoy":
            raise Conflict(
                f"{url} was written by rancher/convoy 0.5.2; this Convoy reads such backups "
                "but does not delete them (their blocks are shared by Convoy's own rules)"
            )
        return {"url": str(parsed), **_delete_backup(store, parsed.volume, parsed.backup)}


def verify_backup(url: str, *, s3_endpoint: str | None = None, progress: Progress | None = None) -> JSONObject:
    """Read and check every block of a backup; `ok` is False when any is missing or damaged."""
    parsed, store = _open_backup(url, s3_endpoint)
    with store:
        if _kind(store, parsed) == "convoy":
            result = legacy_convoy.verify_backup(store, parsed.volume, parsed.backup)
            what = f"Convoy 0.5.2 backup {parsed.backup} of {parsed.volume}"
            message = f"{what} is intact" if result["ok"] else f"{what} is damaged: " + "; ".join(result["problems"][:3])
            return {"url": str(parsed), "message": message, **result}
        report = verify_tree(store, parsed.volume, parsed.backup, progress=progress)
    return {"url": str(parsed), "message": report.message(), **report.as_dict()}


def collect_garbage(dest: str, *, s3_endpoint: str | None = None) -> JSONObject:
    with open_store(parse_store_url(dest), s3_endpoint=s3_endpoint, create=False) as store:
        return _collect_garbage(store)
