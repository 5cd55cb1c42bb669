"""The per-volume backup index: `backup list` without reading every manifest.

`convoy-store/volumes/<volume>/index.v1.json.zst` holds the summary (the
manifest without its block map) of each backup of one volume, with the stamp
(`ObjectStore.list_stamped`: size and mtime, or size and ETag) of the
manifest object it was read from. It is a cache, never the truth; the
listing of the volume's manifests is, and listing names is cheap where
reading 10,000 manifests is not. Against that listing:

- an entry whose manifest is not listed is dropped (deleted, or never
  committed); a listed manifest without an entry, or whose stamp differs
  (rewritten, damaged), is read, and added when it is readable;
- a missing, damaged, oversized, newer or foreign index (another volume's)
  is ignored: every manifest of the volume is read, as without an index.

Listing is what costs on S3 (10,000 manifest names take seconds, and a
list request is billed as ten reads), so there (`ObjectStore.costly_listing`)
an index is also trusted without a listing while the volume's `volume.json`
is unchanged: every backup and delete writes it, with a new random
`generation`, before and after it adds or removes a manifest, and the
index records the generation it read before the listing it was checked
against. Equal generations mean no backup or delete has touched the
volume since. A manifest changed by hand (not through convoy) does not
change it; an index is therefore checked against a listing again when it
was last checked more than REVALIDATE_AFTER ago, or when `volume.json` is
missing or has no generation (written by a Convoy before it).

Whoever finds the index stale writes it back: backup create and delete
after their manifest, `backup list` after it has read what was missing.
No lock is taken: two hosts writing at once may each drop the other's new
entry, an older Convoy writes manifests without it, a writer killed between
its manifest and the index leaves it behind; each case costs the next
reader only the reading of the manifests the index lacks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import zstandard

from app.errors import Conflict, ConvoyError, Damaged, NotFound
from app.json_types import JSONObject

from . import layout, limits, manifest, schemas
from .objectstore import ObjectStore

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

INDEX_FORMAT = "convoy-py-index"
INDEX_VERSION = 1
#: seconds an index is trusted on volume.json's generation alone before a listing checks it again
REVALIDATE_AFTER = 3600.0

#: a backup's summary, or why its manifest cannot be read
Outcome = JSONObject | ConvoyError


@dataclass
class _Volume:
    """One volume of the store as the listing shows it, and what its index says."""

    name: str
    manifests: dict[str, str] = field(default_factory=dict)  # backup name -> stamp of its manifest
    has_index: bool = False
    cached: dict[str, schemas.IndexEntry] = field(default_factory=dict)  # the index as read
    entries: dict[str, schemas.IndexEntry] = field(default_factory=dict)  # the index as it should be
    generation: str | None = None  # of volume.json, read before the listing
    #: the index's own record of the check its entries passed: (generation, when), or None
    checked: tuple[str | None, float] | None = None
    listed: bool = True  # False: the index was trusted on the generation, no listing made

    def stale(self) -> bool:
        """Whether the index must be written: its entries are wrong, or they were
        listed against a generation it does not record (then the next list trusts it)."""
        if not self.listed:
            return False
        if self.entries != self.cached or (self.has_index and not self.entries):
            return True
        return bool(self.entries) and self.generation is not None and not _current(self)


def list_summaries(store: ObjectStore, volume: str | None = None, *, repair: bool = True) -> dict[tuple[str, str], Outcome]:
    """(volume, backup) -> summary or error, for every manifest of the store (or of one volume).

    `repair`: write back the indexes found stale (best effort: a read-only
    store lists all the same, only without the speed-up).
    """
    return _refresh(store, volume, {}, repair, trust=True)


def update(store: ObjectStore, volume: str, known: dict[str, JSONObject] | None = None) -> None:
    """Bring `volume`'s index up to date after a backup (its summary in
    `known`, so it is not read back) or a delete. Never fails the operation
    that calls it: a stale index only costs the next reader some reads."""
    try:
        _refresh(store, volume, known or {}, True, trust=False)
    except ConvoyError as e:
        log.warning("the backup index of volume %s in %s was not updated (%s); the next list repairs it", volume, store.url, e)


def _refresh(
    store: ObjectStore, only: str | None, known: dict[str, JSONObject], write: bool, *, trust: bool
) -> dict[tuple[str, str], Outcome]:
    """`trust`: an index whose generation is current is believed without a listing
    where listing costs (a writer, which has just changed the volume, never trusts one)."""
    trust = trust and store.costly_listing
    workers = max(1, store.lookups)
    folders = [only] if only else list(store.list_folders(layout.VOLUMES))
    # each volume looked at apart, in parallel with the others: a store that lists
    # key by key (S3) takes as long for 10,000 keys in one listing
    volumes = [v for v in _map(workers, lambda name: _scan(store, name, trust), folders) if v.manifests or v.has_index]
    outcomes: dict[tuple[str, str], Outcome] = {}
    to_read: list[tuple[_Volume, str, str]] = []
    for vol in volumes:
        for name, stamp in vol.manifests.items():
            hit = vol.cached.get(name)
            if hit is not None and hit["stamp"] == stamp:
                vol.entries[name] = hit
            elif name in known:
                vol.entries[name] = {"stamp": stamp, "summary": known[name]}  # type: ignore[typeddict-item]  # ours, just written
            else:
                to_read.append((vol, name, stamp))
                continue
            outcomes[(vol.name, name)] = manifest.summary(vol.entries[name]["summary"])
    read = _map(workers, lambda item: _read_summary(store, item[0].name, item[1]), to_read)
    for (vol, name, stamp), outcome in zip(to_read, read, strict=True):
        outcomes[(vol.name, name)] = outcome
        if not isinstance(outcome, ConvoyError):
            vol.entries[name] = {"stamp": stamp, "summary": outcome}  # type: ignore[typeddict-item]  # read and checked
    if write:
        _map(workers, lambda v: _write_index(store, v), [v for v in volumes if v.stale()])
    return outcomes


def _scan(store: ObjectStore, volume: str, trust: bool) -> _Volume:
    """One volume: what its index says and, unless the index can be trusted as it
    is, its manifests with their stamps (one listing)."""
    vol = _Volume(volume)
    doc = manifest.read_volume(store, volume)  # before the listing: a change after it shows as a new generation
    vol.generation = doc.get("generation") if doc else None
    if trust:
        vol.has_index = True  # to be seen: reading it costs what listing to find it would
        vol.cached, vol.checked = _read_index(store, vol)
        if _current(vol):
            vol.has_index, vol.listed, vol.entries = bool(vol.cached), False, dict(vol.cached)
            vol.manifests = {name: entry["stamp"] for name, entry in vol.cached.items()}
            return vol
    vol.has_index = False
    for key, stamp in store.list_stamped(layout.volume_prefix(volume)):
        if parsed := layout.parse_backup_key(key):
            vol.manifests[parsed[1]] = stamp
        elif layout.parse_index_key(key):
            vol.has_index = True
    if not trust:
        vol.cached, vol.checked = _read_index(store, vol)
    return vol


def _current(vol: _Volume) -> bool:
    """Whether no backup or delete has changed the volume since its index was checked."""
    if vol.checked is None or vol.generation is None or not vol.cached:
        return False
    generation, checked_at = vol.checked
    return generation == vol.generation and 0 <= time.time() - checked_at < REVALIDATE_AFTER


def _read_summary(store: ObjectStore, volume: str, backup: str) -> Outcome:
    try:
        return manifest.summary(manifest.read_backup(store, volume, backup))
    except (Damaged, Conflict, NotFound) as e:  # an unreadable backup is listed with why, not hidden
        return e


def _read_index(store: ObjectStore, vol: _Volume) -> tuple[dict[str, schemas.IndexEntry], tuple[str | None, float] | None]:
    """The entries of `vol`'s index and the check they passed (generation, when);
    none when it is missing or cannot be trusted (then it is rebuilt)."""
    if not vol.has_index:
        return {}, None
    key = layout.index_key(vol.name)
    where = f"{store.url}: {key}"
    try:
        data = store.get_at_most(key, limits.MAX_INDEX, "backup index")
        what = f"backup index {where}"
        if limits.zstd_frame_size(data, what) != len(data):
            raise Damaged(f"{what} holds bytes after its zstd frame")
        text = limits.zstd_decompress_capped(data, limits.MAX_INDEX, what)
        doc = manifest.parse_document(text, schemas.IndexDoc, kind="backup index", format=INDEX_FORMAT, where=where)
        if doc["version"] != INDEX_VERSION:
            raise Damaged(f"{where} says format version {doc['version']}, its name {INDEX_VERSION}")
        _check_owner(doc, vol.name, where)
    except NotFound:
        return {}, None  # none, or removed since the listing
    except (Damaged, Conflict) as e:
        log.warning("%s; it is ignored and rebuilt from the manifests", e)
        return {}, None
    checked = (doc.get("volume_generation"), doc["checked_at"]) if "checked_at" in doc else None
    return doc["backups"], checked


def _check_owner(doc: schemas.IndexDoc, volume: str, where: str) -> None:
    """An index copied from another volume (or edited) would list that volume's backups as this one's."""
    if doc["volume"] != volume:
        raise Damaged(f"{where} is the backup index of volume {doc['volume']!r}, not of {volume!r}")
    for name, entry in doc["backups"].items():
        if (entry["summary"]["volume"], entry["summary"]["name"]) != (volume, name):
            raise Damaged(
                f"{where} lists backup {entry['summary']['name']!r} of volume {entry['summary']['volume']!r} "
                f"as {name!r} of {volume!r}"
            )


def _write_index(store: ObjectStore, vol: _Volume) -> None:
    """Write `vol`'s index as it should be; remove it when the volume has no backup left or it grew too big."""
    key = layout.index_key(vol.name)
    try:
        if not vol.entries:
            store.delete(key)
            return
        doc = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "volume": vol.name,
            "backups": vol.entries,
            "volume_generation": vol.generation,
            "checked_at": time.time(),
        }
        text = json.dumps(doc, separators=(",", ":")).encode()
        if len(text) > limits.MAX_INDEX:
            log.warning("volume %s has too many backups in %s for an index: they list from their manifests", vol.name, store.url)
            store.delete(key)
            return
        store.put(key, zstandard.ZstdCompressor(level=3).compress(text))
    except ConvoyError as e:  # a read-only store (a mount, or credentials): it lists all the same, without the cache
        log.info("the backup index of volume %s in %s was not written (%s)", vol.name, store.url, e)


def _map(workers: int, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`fn` over `items`, `workers` at a time (store calls wait on the network); inline for one."""
    items = list(items)
    if len(items) <= 1 or workers == 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="convoy-list") as pool:
        return list(pool.map(fn, items))
