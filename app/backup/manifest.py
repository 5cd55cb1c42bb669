"""Store config, per-volume and per-backup manifests (format version 1).

See docs/backup-format.md. Every manifest carries the complete block map of
its backup, so a backup restores alone and deleting one never breaks another.
Manifests are JSON; backup manifests are zstd-compressed (block maps of big
volumes are long and hashes dominate them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import zstandard

from app.errors import Conflict, NotFound

from . import layout
from .objectstore import ObjectStore

FORMAT_VERSION = 1
STORE_FORMAT = "convoy-py-store"
VOLUME_FORMAT = "convoy-py-volume"
BACKUP_FORMAT = "convoy-py-backup"
DEFAULT_BLOCK_SIZE = 1 << 20


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class StoreConfig:
    version: int = FORMAT_VERSION
    block_size: int = DEFAULT_BLOCK_SIZE
    block_hash: str = "blake3"
    compression: str = "zstd"
    created_at: str = field(default_factory=now_rfc3339)

    def to_json(self) -> dict:
        return {"format": STORE_FORMAT, **self.__dict__}


def _check_version(kind: str, raw: dict, where: str) -> None:
    version = raw.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise Conflict(
            f"{where} is a {kind} of format version {version}; this Convoy reads up to "
            f"version {FORMAT_VERSION}: upgrade Convoy to use it"
        )


def load_config(store: ObjectStore) -> StoreConfig | None:
    try:
        raw = json.loads(store.get(layout.CONFIG))
    except NotFound:
        return None
    except ValueError:
        raise Conflict(f"{store.url}: {layout.CONFIG} is unreadable; the store is damaged") from None
    if raw.get("format") != STORE_FORMAT:
        raise Conflict(f"{store.url}: {layout.CONFIG} is not a Convoy store config")
    _check_version("store", raw, store.url)
    return StoreConfig(**{k: raw[k] for k in StoreConfig.__dataclass_fields__ if k in raw})


def ensure_config(store: ObjectStore, block_size: int = DEFAULT_BLOCK_SIZE) -> StoreConfig:
    """Read the store config, creating the store on first use."""
    config = load_config(store)
    if config is None:
        config = StoreConfig(block_size=block_size)
        store.put(layout.CONFIG, json.dumps(config.to_json(), indent=1).encode())
    if config.block_hash != "blake3" or config.compression != "zstd":
        raise Conflict(f"{store.url} uses {config.block_hash}/{config.compression}, which this Convoy cannot write")
    return config


# -- per-volume manifest ------------------------------------------------------

def write_volume(store: ObjectStore, volume: str, *, size: int | None, driver: str, last_backup: str) -> None:
    key = layout.volume_key(volume)
    try:
        created = json.loads(store.get(key)).get("created_at") or now_rfc3339()
    except (NotFound, ValueError):
        created = now_rfc3339()
    doc = {
        "format": VOLUME_FORMAT,
        "version": FORMAT_VERSION,
        "name": volume,
        "driver": driver,
        "size": size,
        "created_at": created,
        "last_backup": last_backup,  # a hint; the backups/ listing is the truth
    }
    store.put(key, json.dumps(doc, indent=1).encode())


def read_volume(store: ObjectStore, volume: str) -> dict:
    try:
        raw = json.loads(store.get(layout.volume_key(volume)))
    except NotFound:
        raise NotFound(f"no backups of volume {volume!r} in {store.url}") from None
    _check_version("volume manifest", raw, layout.volume_key(volume))
    return raw


# -- per-backup manifest -----------------------------------------------------

def encode_manifest(doc: dict) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(json.dumps(doc, separators=(",", ":")).encode())


def decode_manifest(data: bytes, where: str) -> dict:
    try:
        doc = json.loads(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31))
    except (zstandard.ZstdError, ValueError) as e:
        raise Conflict(f"backup manifest {where} is unreadable ({e}); the store is damaged") from None
    if doc.get("format") != BACKUP_FORMAT:
        raise Conflict(f"{where} is not a Convoy backup manifest")
    _check_version("backup manifest", doc, where)
    return doc


def write_backup(store: ObjectStore, doc: dict) -> None:
    store.put(layout.backup_key(doc["volume"], doc["name"]), encode_manifest(doc))


def read_backup(store: ObjectStore, volume: str, backup: str) -> dict:
    key = layout.backup_key(volume, backup)
    try:
        data = store.get(key)
    except NotFound:
        raise NotFound(
            f"backup {backup!r} of volume {volume!r} is not in {store.url}: "
            "check the URL with `convoy backup list`"
        ) from None
    return decode_manifest(data, key)


def list_backup_names(store: ObjectStore, volume: str | None = None) -> list[tuple[str, str]]:
    """(volume, backup) of every manifest, optionally of one volume."""
    prefix = layout.backups_prefix(volume) if volume else layout.VOLUMES
    found = []
    for key in store.list(prefix):
        parsed = layout.parse_backup_key(key)
        if parsed:
            found.append(parsed)
    return sorted(found)


def latest_backup(store: ObjectStore, volume: str) -> dict | None:
    """The newest readable backup manifest of a volume (the base of an incremental).

    The per-volume manifest names the last one written, which costs one read
    (any readable backup is a correct base; the newest is merely the best);
    when that hint is missing or stale, every manifest is read to find it.
    """
    try:
        hint = json.loads(store.get(layout.volume_key(volume))).get("last_backup")
    except (NotFound, ValueError):
        hint = None
    if hint:
        try:
            return read_backup(store, volume, hint)
        except (NotFound, Conflict):
            pass  # deleted or damaged: look at them all
    best = None
    for vol, name in list_backup_names(store, volume):
        try:
            doc = read_backup(store, vol, name)
        except (NotFound, Conflict):
            continue
        if best is None or (doc["created_at"], doc["name"]) > (best["created_at"], best["name"]):
            best = doc
    return best


def summary(doc: dict) -> dict:
    """What `backup list` / `backup inspect` show (no block map)."""
    return {k: v for k, v in doc.items() if k not in ("entries",)}


def block_digests(doc: dict):
    """Every block digest a manifest uses (with repeats)."""
    for entry in doc.get("entries", ()):
        for block in entry.get("blocks", ()):
            yield block[2]


