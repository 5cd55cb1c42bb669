"""Schemas of our store's documents (format version 1, docs/backup-format.md).

Read through `app.validation`: types are strict (a "1" is not a number),
numbers have the ranges the code that uses them can handle (a size fits an
off_t, a mode is permission bits). Unknown fields of a document are kept so
that `backup inspect` shows what a writer added; unknown fields of an entry
are dropped, so a `blocks` or `target` on an entry type that has none never
reaches the code that reads them. Checks that span fields (a
block inside its file, no longer than the backup's block size) are in
`manifest.py`, next to the reading.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import ConfigDict, FailFast, Field, Strict, StringConstraints, with_config
from typing_extensions import TypedDict

from .limits import MAX_BLOCK_SIZE, MIN_BLOCK_SIZE

INT64_MAX = (1 << 63) - 1
UINT32_MAX = (1 << 32) - 1

Str = Annotated[str, Strict()]
Name = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=255)]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]  # a JSON number, int or float (timestamps)


# Integers in a range (pydantic checks the range, mypy sees an int)
BlockSize = Annotated[int, Strict(), Field(ge=MIN_BLOCK_SIZE, le=MAX_BLOCK_SIZE)]
BlockLength = Annotated[int, Strict(), Field(ge=1, le=MAX_BLOCK_SIZE)]
Offset = Annotated[int, Strict(), Field(ge=0, le=INT64_MAX)]  # also a size, a device number, a pid
Mode = Annotated[int, Strict(), Field(ge=0, le=0o7777)]
OwnerId = Annotated[int, Strict(), Field(ge=0, le=UINT32_MAX - 1)]  # 2**32-1 means "leave unchanged" to chown
MtimeNs = Annotated[int, Strict(), Field(ge=-INT64_MAX, le=INT64_MAX)]
Digest = Annotated[str, Strict(), StringConstraints(pattern=r"^[0-9a-f]{64}$")]
# [offset, length, BLAKE3 of the uncompressed bytes]; lists read from JSON become tuples
Block = tuple[Offset, BlockLength, Digest]

_KEEP_EXTRA = ConfigDict(extra="allow")
_DROP_EXTRA = ConfigDict(extra="ignore")


@with_config(_KEEP_EXTRA)
class Header(TypedDict):
    """What is read first, so a newer format is told apart from a broken one."""

    format: Str
    version: NotRequired[object]


# base64 of at most a few dozen bytes (salts, ids, a wrapped key)
B64 = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=256)]


@with_config(_KEEP_EXTRA)
class KdfDoc(TypedDict):
    """How the wrapping key is derived; scrypt's n, r, p are checked by `crypto.check_kdf`."""

    name: Str
    salt: B64


@with_config(_KEEP_EXTRA)
class EncryptionDoc(TypedDict):
    cipher: Literal["aes-256-gcm"]
    store_id: B64
    kdf: KdfDoc
    wrapped_key: B64


@with_config(_KEEP_EXTRA)
class StoreConfigDoc(TypedDict):
    format: Literal["convoy-py-store"]
    version: Annotated[int, Strict()]
    block_size: BlockSize
    block_hash: Str
    compression: Str
    created_at: NotRequired[Str]
    encryption: NotRequired[EncryptionDoc]  # version 2: an encrypted store


@with_config(_KEEP_EXTRA)
class VolumeDoc(TypedDict):
    format: Literal["convoy-py-volume"]
    version: Annotated[int, Strict()]
    name: Name
    created_at: NotRequired[Str | None]
    last_backup: NotRequired[Str | None]
    driver: NotRequired[Str]
    size: NotRequired[Offset | None]
    generation: NotRequired[Str]  # new at every write, so the object's stamp changes (index.py)


class _Meta(TypedDict):
    path: Str
    mode: Mode
    uid: OwnerId
    gid: OwnerId
    mtime_ns: MtimeNs
    xattrs: NotRequired[dict[Str, Str] | None]


@with_config(_DROP_EXTRA)
class DirEntry(_Meta):
    type: Literal["dir"]


@with_config(_DROP_EXTRA)
class FileEntry(_Meta):
    type: Literal["file"]
    size: Offset
    blocks: Annotated[list[Block], FailFast()]


@with_config(_DROP_EXTRA)
class LinkEntry(_Meta):
    type: Literal["symlink", "hardlink"]
    target: Annotated[str, Strict(), StringConstraints(min_length=1)]


@with_config(_DROP_EXTRA)
class FifoEntry(_Meta):
    type: Literal["fifo"]


@with_config(_DROP_EXTRA)
class DeviceEntry(_Meta):
    type: Literal["chardev", "blockdev"]
    rdev: Offset


Entry = Annotated[DirEntry | FileEntry | LinkEntry | FifoEntry | DeviceEntry, Field(discriminator="type")]


@with_config(_KEEP_EXTRA)
class BackupSummary(TypedDict):
    """A backup manifest without its block map: what `backup list` shows, and what an index caches."""

    format: Literal["convoy-py-backup"]
    version: Annotated[int, Strict()]
    name: Name
    volume: Name
    created_at: Str
    block_size: BlockSize
    source: NotRequired[Literal["tree", "image"]]
    snapshot: NotRequired[Str | None]
    snapshot_created_at: NotRequired[Str | None]
    driver: NotRequired[Str | None]
    volume_size: NotRequired[Offset | None]  # the size a restore creates the volume with
    base_backup: NotRequired[Str | None]


@with_config(_KEEP_EXTRA)
class BackupDoc(BackupSummary):
    entries: Annotated[list[Entry], FailFast()]


#: what an index records of a manifest's stored object (ObjectStore.list_stamped)
Stamp = Annotated[str, Strict(), StringConstraints(max_length=200)]


@with_config(_DROP_EXTRA)
class IndexEntry(TypedDict):
    stamp: Stamp
    summary: BackupSummary


@with_config(_DROP_EXTRA)
class IndexDoc(TypedDict):
    format: Literal["convoy-py-index"]
    version: Annotated[int, Strict()]
    volume: Name
    backups: dict[Name, IndexEntry]
    #: the generation of the volume's volume.json read before the listing the
    #: entries were checked against (None: it had none), and when (Unix seconds)
    volume_generation: NotRequired[Str | None]
    checked_at: NotRequired[Number]


@with_config(_KEEP_EXTRA)
class LockDoc(TypedDict):
    id: Annotated[str, Strict(), StringConstraints(pattern=r"^[0-9a-zA-Z_-]{1,64}$")]
    kind: Literal["shared", "exclusive"]
    operation: Str
    host: Str
    pid: Offset
    expires_at: Number
