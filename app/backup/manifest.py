"""Store config, per-volume and per-backup manifests (format version 1).

See docs/backup-format.md. Every manifest carries the complete block map of
its backup, so a backup restores alone and deleting one never breaks another.
Manifests are JSON; backup manifests are zstd-compressed (block maps of big
volumes are long and hashes dominate them).
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import logging
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import zstandard

from app.errors import Conflict, Damaged, InvalidInput, NotFound
from app.json_types import JSONObject
from app.names import check_name
from app.validation import validate

from . import layout, limits, schemas
from .objectstore import ObjectStore

log = logging.getLogger(__name__)
T = TypeVar("T")

FORMAT_VERSION = 1
# the store config of an encrypted store says 2: a Convoy that knows only
# version 1 then refuses the store rather than write plaintext into it
STORE_VERSION_ENCRYPTED = 2
STORE_FORMAT = "convoy-py-store"
VOLUME_FORMAT = "convoy-py-volume"
BACKUP_FORMAT = "convoy-py-backup"
DEFAULT_BLOCK_SIZE = 1 << 20
XATTR_B64_MAX = 4 * (65536 + 2) // 3  # base64 of Linux's largest value (XATTR_SIZE_MAX)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class StoreConfig:
    version: int = FORMAT_VERSION
    block_size: int = DEFAULT_BLOCK_SIZE
    block_hash: str = "blake3"
    compression: str = "zstd"
    created_at: str = field(default_factory=now_rfc3339)
    encryption: JSONObject | None = None  # see encryption.py; None: a plain store

    def to_json(self) -> JSONObject:
        return {"format": STORE_FORMAT, **{k: v for k, v in self.__dict__.items() if v is not None}}


def _check_version(kind: str, version: object, where: str, known: int = FORMAT_VERSION) -> None:
    """Only a newer version is fixed by upgrading Convoy; a missing, non-integer
    or pre-1 version was never written by any Convoy: the object is damaged."""
    damaged = "the store is damaged: restore this object from a copy" + (
        " or delete the backup" if kind == "backup manifest" else ""
    )
    if version is None:
        raise Damaged(f"{where} is a {kind} without a format version; {damaged}")
    if not isinstance(version, int) or isinstance(version, bool):
        raise Damaged(f"{where}: format version {version!r} is not an integer; {damaged}")
    if version < 1:
        raise Damaged(f"{where}: format version {version} does not exist (versions start at 1); {damaged}")
    if version > known:
        raise Conflict(
            f"{where} is a {kind} of format version {version}; this Convoy reads format versions "
            f"up to {known}: upgrade Convoy to use it"
        )


def parse_document(
    data: bytes | bytearray, schema: type[T], *, kind: str, format: str, where: str, known: int = FORMAT_VERSION
) -> T:
    """Parse one of our JSON documents: its format and version first (so a
    newer format says "upgrade", not "invalid"), then the whole schema.

    `json.loads` rather than pydantic's JSON parser: file names that are not
    UTF-8 are stored as lone surrogate escapes (Python's surrogateescape),
    which only Python's parser reads back. Its nesting limit raises
    RecursionError, which is caught like any other malformed JSON.
    """
    with _gc_paused():
        try:
            raw: Any = json.loads(data)
        except (ValueError, RecursionError) as e:
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            raise Damaged(f"{where} is not a readable {kind} (not JSON: {reason}); the store is damaged") from None
        header: schemas.Header = validate(schemas.Header, raw, what=where, error=Damaged)
        if header["format"] != format:
            raise Damaged(f"{where} is not a Convoy {kind} (its format is {header['format']!r})")
        _check_version(kind, header.get("version"), where, known)
        return validate(schema, raw, what=where, error=Damaged)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Parsing a manifest makes millions of lists and dicts and no cycles, but
    each allocation burst wakes the cycle collector over all of them: with it
    paused a 1M-block manifest reads in 1.5 s instead of 4.5 s."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_config(store: ObjectStore) -> tuple[schemas.StoreConfigDoc, bytes] | None:
    """The store config, checked, with its bytes as stored (an encrypted store's
    wrapped key is bound to them); None when the store has none yet."""
    try:
        data = bytes(store.get_at_most(layout.CONFIG, limits.MAX_SMALL_DOC, "store config"))
    except NotFound:
        return None
    where = f"{store.url}: {layout.CONFIG}"
    doc = parse_document(
        data, schemas.StoreConfigDoc, kind="store config", format=STORE_FORMAT, where=where, known=STORE_VERSION_ENCRYPTED
    )
    if ("encryption" in doc) != (doc["version"] == STORE_VERSION_ENCRYPTED):
        raise Damaged(f"{where}: only a version {STORE_VERSION_ENCRYPTED} store config has an encryption section; it is damaged")
    return doc, data


def load_config(store: ObjectStore) -> StoreConfig | None:
    found = read_config(store)
    if found is None:
        return None
    doc = found[0]
    return StoreConfig(
        version=doc["version"],
        block_size=doc["block_size"],
        block_hash=doc["block_hash"],
        compression=doc["compression"],
        created_at=doc.get("created_at") or now_rfc3339(),
        encryption=dict(doc["encryption"]) if "encryption" in doc else None,
    )


def block_hash_of(store: ObjectStore) -> str:
    """What names the blocks of `store`: BLAKE3, keyed in an encrypted store."""
    return "blake3-keyed" if store.block_id_key else "blake3"


def write_config(store: ObjectStore, config: StoreConfig) -> None:
    store.put(layout.CONFIG, json.dumps(config.to_json(), indent=1).encode())


def ensure_config(store: ObjectStore) -> StoreConfig:
    """Read the store config, creating a plain store on first use (blocks of the store's default size)."""
    config = load_config(store)
    if config is None:
        config = StoreConfig(block_size=store.default_block_size)
        write_config(store, config)
    if config.encryption is not None and store.block_id_key is None:
        # the engine unlocks encrypted stores when it opens them (encryption.unlock): never reached
        # through it, but nothing may ever write plaintext into an encrypted store
        raise Conflict(f"{store.url} is an encrypted store opened without its key; nothing was written")
    if config.block_hash != block_hash_of(store) or config.compression != "zstd":
        raise Conflict(f"{store.url} uses {config.block_hash}/{config.compression}, which this Convoy cannot write")
    return config


# -- per-volume manifest ------------------------------------------------------

def read_volume(store: ObjectStore, volume: str) -> schemas.VolumeDoc | None:
    """The per-volume manifest, or None when it is missing or unreadable.

    It holds only hints (the backups/ listing is the truth), so a damaged
    one never stops a backup: the next backup rewrites it.
    """
    key = layout.volume_key(volume)
    try:
        data = store.get_at_most(key, limits.MAX_SMALL_DOC, "volume manifest")
        where = f"{store.url}: {key}"
        return parse_document(bytes(data), schemas.VolumeDoc, kind="volume manifest", format=VOLUME_FORMAT, where=where)
    except NotFound:
        return None
    except (Damaged, Conflict) as e:  # damaged, or of a newer format
        log.warning("%s; the next backup of volume %s rewrites it", e, volume)
        return None


def write_volume(store: ObjectStore, volume: str, *, size: int | None, driver: str, last_backup: str | None) -> None:
    """Write the per-volume manifest (`last_backup` None keeps the one it names).

    Every write changes its stamp (a new `generation`): a backup or a delete
    writes it before and after changing the volume's manifests, so an index
    that saw its stamp knows no manifest changed since (index.py).
    """
    old = read_volume(store, volume)
    doc = {
        "format": VOLUME_FORMAT,
        "version": FORMAT_VERSION,
        "name": volume,
        "driver": driver,
        "size": size,
        "created_at": (old and old.get("created_at")) or now_rfc3339(),
        "last_backup": last_backup or (old and old.get("last_backup")),  # a hint; the backups/ listing is the truth
        "generation": secrets.token_hex(8),
    }
    store.put(layout.volume_key(volume), json.dumps(doc, indent=1).encode())


def touch_volume(store: ObjectStore, volume: str) -> None:
    """A new generation of the per-volume manifest, saying the same: before a
    manifest of the volume is added or removed (see write_volume)."""
    old = read_volume(store, volume)
    size, driver = (old.get("size"), old.get("driver") or "") if old else (None, "")
    write_volume(store, volume, size=size, driver=driver, last_backup=None)


# -- per-backup manifest -----------------------------------------------------

def encode_manifest(doc: JSONObject) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(json.dumps(doc, separators=(",", ":")).encode())


class SealedInPlainStore(Conflict):
    """An encrypted object read through a store whose config says it is plain."""


def decode_manifest(data: bytes | memoryview, where: str) -> schemas.BackupDoc:
    """A stored backup manifest, checked: size, JSON, schema, and the block map."""
    what = f"backup manifest {where}"
    if bytes(data[: len(layout.SEALED_MAGIC)]) == layout.SEALED_MAGIC:
        # an encrypted store whose config.json was replaced by a plain one, or removed: a backup
        # must not go on and write plaintext beside the encrypted backups
        raise SealedInPlainStore(
            f"{what} is encrypted, but the store's {layout.CONFIG} says (or, missing, means) a plain store: "
            "the config was replaced or removed. Nothing was backed up or restored; put back the "
            "encrypted store's config.json from a copy"
        )
    frame = limits.zstd_frame_size(data, what)
    if frame != len(data):
        raise Damaged(
            f"{what} holds {len(data) - frame} bytes after its zstd frame, which no Convoy writes; "
            "the store is damaged: restore this object from a copy or delete the backup"
        )
    text = limits.zstd_decompress_capped(data, limits.manifest_cap(frame), what)
    doc = parse_document(text, schemas.BackupDoc, kind="backup manifest", format=BACKUP_FORMAT, where=where)
    _check_entries(doc, where)
    return doc


def _check_entries(doc: schemas.BackupDoc, where: str) -> None:
    """What the schema cannot say alone: paths without NUL, and every block
    inside its file and no longer than the backup's block size (which bounds
    the buffers a restore or verify allocates)."""
    block_size = doc["block_size"]
    for i, entry in enumerate(doc["entries"]):
        if "\0" in entry["path"] or "\0" in (link_target(entry) or ""):
            raise Damaged(f"{where} is not valid: entries.{i}: a path holds a NUL character")
        if xattrs := entry.get("xattrs"):
            _check_xattrs(xattrs, f"{where} is not valid: entries.{i} ({entry['path']!r})")
        if entry["type"] != "file":
            continue
        for offset, length, _digest in entry["blocks"]:
            if length > block_size or offset + length > entry["size"]:
                raise Damaged(
                    f"{where} is not valid: entries.{i} ({entry['path']!r}): a block of {length} bytes at "
                    f"offset {offset} lies outside the file's {entry['size']} bytes or exceeds the "
                    f"backup's block size {block_size}"
                )
    if doc.get("source") == "image" and [e["type"] for e in doc["entries"]] != ["file"]:
        raise Damaged(f"{where} is not valid: an image backup has exactly one entry, a file")


def _check_xattrs(values: dict[str, str], where: str) -> None:
    for name, value in values.items():
        if not name or "\0" in name or len(name) > 255:
            raise Damaged(f"{where}: extended attribute name {name[:40]!r} is not a valid name")
        try:
            if len(value) > XATTR_B64_MAX:
                raise ValueError("too long")
            base64.b64decode(value, validate=True)
        except ValueError:
            raise Damaged(f"{where}: the value of extended attribute {name!r} is not valid base64 of at most 64 KiB") from None


def write_backup(store: ObjectStore, doc: JSONObject) -> None:
    store.put(layout.backup_key(doc["volume"], doc["name"]), encode_manifest(doc))


def read_backup(store: ObjectStore, volume: str, backup: str) -> schemas.BackupDoc:
    key = layout.backup_key(volume, backup)
    try:
        data = store.get_at_most(key, limits.MAX_MANIFEST, "backup manifest")
    except NotFound:
        raise NotFound(
            f"backup {backup!r} of volume {volume!r} is not in {store.url}: "
            "check the URL with `convoy backup list`"
        ) from None
    doc = decode_manifest(data, key)
    if (doc["volume"], doc["name"]) != (volume, backup):
        raise Damaged(
            f"{key} holds backup {doc['name']!r} of volume {doc['volume']!r}, not the one its name "
            "says; it was moved or copied by hand: move it back, or delete it"
        )
    return doc


def list_backup_names(store: ObjectStore, volume: str | None = None) -> list[tuple[str, str]]:
    """(volume, backup) of every manifest, optionally of one volume."""
    prefix = layout.backups_prefix(volume) if volume else layout.VOLUMES
    found = []
    for key in store.list(prefix):
        parsed = layout.parse_backup_key(key)
        if parsed:
            found.append(parsed)
    return sorted(found)


def latest_backup(store: ObjectStore, volume: str) -> schemas.BackupDoc | None:
    """The newest readable backup manifest of a volume (the base of an incremental).

    The per-volume manifest names the last one written, which costs one read
    (any readable backup is a correct base; the newest is merely the best);
    when that hint is missing or stale, every manifest is read to find it.
    """
    volume_doc = read_volume(store, volume)
    hint = volume_doc.get("last_backup") if volume_doc else None
    if hint and _is_backup_name(hint):
        try:
            return read_backup(store, volume, hint)
        except SealedInPlainStore:
            raise
        except (NotFound, Damaged, Conflict):
            pass  # deleted, damaged or of a newer format: look at them all
    best = None
    for vol, name in list_backup_names(store, volume):
        try:
            doc = read_backup(store, vol, name)
        except SealedInPlainStore:
            raise
        except (NotFound, Damaged, Conflict):
            continue
        if best is None or (doc["created_at"], doc["name"]) > (best["created_at"], best["name"]):
            best = doc
    return best


def _is_backup_name(name: str) -> bool:
    try:
        check_name("backup", name)
    except InvalidInput:
        return False
    return True


def summary(doc: Mapping[str, object]) -> JSONObject:
    """What `backup list` / `backup inspect` show: no block map, and of the
    other fields only plain values or flat objects of them (as `stats`): a
    field another writer nested deep could break the response's encoding."""
    return {k: v for k, v in doc.items() if k not in _NOT_SHOWN and _is_flat(v)}


# exact types, as JSON parsing makes them: `backup list` checks ~15 values of each of 10,000 backups
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _is_flat(value: object) -> bool:
    kind = type(value)
    return kind in _SCALARS or (kind is dict and all(type(v) in _SCALARS for v in value.values()))  # type: ignore[attr-defined]


# the block map, and names the listing gives its own meaning (a row's URL, why it is unreadable)
_NOT_SHOWN = frozenset({"entries", "url", "error"})


def file_blocks(entry: schemas.Entry) -> list[schemas.Block]:
    """The block map of a file entry; other entry types have none."""
    return entry["blocks"] if entry["type"] == "file" else []


def link_target(entry: schemas.Entry) -> str | None:
    """What a symlink or hard link points to; None for other entry types."""
    return entry["target"] if entry["type"] == "symlink" or entry["type"] == "hardlink" else None


def block_digests(doc: schemas.BackupDoc) -> Iterator[str]:
    """Every block digest a manifest uses (with repeats)."""
    for entry in doc["entries"]:
        for block in file_blocks(entry):
            yield block[2]


