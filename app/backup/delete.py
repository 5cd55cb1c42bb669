"""Delete a backup and collect the blocks no other backup uses.

Runs under the store's exclusive lock, so no backup is in flight (a backup
holds a shared lock from before it looks at the store until its manifest is
written). It collects nothing when any manifest cannot be read: a block
that an unreadable manifest might use is never deleted.
"""

from __future__ import annotations

import time

from app.errors import Conflict, Damaged, NotFound
from app.json_types import JSONObject

from . import index, layout, manifest
from .locks import DEFAULT_TTL, StoreLock, remove_expired_locks
from .objectstore import ObjectStore
from .objectstore.vfs import VfsStore

TEMPORARY_AGE = max(3600.0, 4 * DEFAULT_TTL)  # leftovers of killed writers older than this go


def delete_backup(store: ObjectStore, volume: str, backup: str) -> JSONObject:
    """Remove one backup, then garbage-collect; return what was removed.

    When another manifest is unreadable the backup is still deleted, but no
    block is: any of them may belong to the unreadable backup. The result's
    `warning` says so and what to do.
    """
    with StoreLock(store, "exclusive", f"delete of backup {backup} of volume {volume}") as lock:
        key = layout.backup_key(volume, backup)
        if not store.exists(key):
            raise NotFound(f"backup {backup} of volume {volume} is not in {store.url}")
        referenced, unreadable = _referenced_blocks(store, skip=(volume, backup))
        lock.check_held()
        manifest.touch_volume(store, volume)  # before the change, for the index (index.py)
        store.delete(key)
        if manifest.list_backup_names(store, volume):
            manifest.touch_volume(store, volume)
        else:
            store.delete(layout.volume_key(volume))
        index.update(store, volume)  # drops the entry (and the index with the last backup)
        result = {"deleted": backup, "volume": volume}
        if unreadable:
            return {**result, "blocks_removed": 0, "warning": _kept_blocks_warning(unreadable)}
        return {**result, **_collect(store, referenced)}


def collect_garbage(store: ObjectStore) -> JSONObject:
    """Garbage collection alone (blocks left by killed backups, stale temporaries)."""
    with StoreLock(store, "exclusive", "garbage collection"):
        referenced, unreadable = _referenced_blocks(store)
        if unreadable:
            raise Conflict(_kept_blocks_warning(unreadable))
        return _collect(store, referenced)


def _referenced_blocks(store: ObjectStore, skip: tuple[str, str] | None = None) -> tuple[set[str], list[str]]:
    """Every block the manifests name, and why each unreadable manifest is."""
    referenced: set[str] = set()
    unreadable: list[str] = []
    for vol, name in manifest.list_backup_names(store):
        if (vol, name) == skip:
            continue
        try:
            doc = manifest.read_backup(store, vol, name)
        except NotFound:
            continue  # deleted since the listing (not by a delete: we hold the exclusive lock)
        except (Damaged, Conflict) as e:  # damaged, or of a newer format
            unreadable.append(f"backup {name} of volume {vol} ({e})")
            continue
        referenced.update(manifest.block_digests(doc))
    return referenced, unreadable


def _kept_blocks_warning(unreadable: list[str]) -> str:
    more = f" and {len(unreadable) - 1} more" if len(unreadable) > 1 else ""
    return (
        f"unused blocks were kept: {unreadable[0]}{more} cannot be read, and its blocks must not be "
        "deleted. Restore that manifest from a copy, or delete that backup with `convoy backup delete`; "
        "the next delete then removes the unused blocks"
    )


def _collect(store: ObjectStore, referenced: set[str]) -> JSONObject:
    unused = []
    for key in store.list(layout.BLOCKS):
        digest = layout.digest_of_block_key(key)
        if digest is not None and digest not in referenced:
            unused.append(key)
    if hasattr(store, "delete_many"):
        store.delete_many(unused)
    else:
        for key in unused:
            store.delete(key)
    temporaries = 0
    if isinstance(store, VfsStore):
        now = time.time()
        for rel, mtime in list(store.list_temporaries(layout.ROOT)):
            if now - mtime > TEMPORARY_AGE:
                store.remove_temporary(rel)
                temporaries += 1
    expired = remove_expired_locks(store)
    return {"blocks_removed": len(unused), "temporaries_removed": temporaries, "expired_locks_removed": expired}
