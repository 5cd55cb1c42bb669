"""The small interface every backup destination implements.

Keys are relative, '/'-separated paths ("blocks/ab/cd/abcd...",
"convoy-store/volumes/v/backups/b.json"). Every put is atomic: a reader sees
the whole object or nothing (write-then-rename on file systems, whole-object
PUT on S3), so a killed writer never leaves half an object behind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO

from ..limits import check_size

#: what `put` takes: bytes, or pieces of them stored concatenated (a block
#: stored raw is its frame header and views of the data, never copied)
Stored = bytes | memoryview | list[bytes | memoryview]


class ObjectStore(ABC):
    """put, get, exists, list, delete: all a format needs of a destination."""

    #: a short description for messages ("vfs:///srv/backups")
    url: str
    #: how many blocks to move at once: a local disk wants few, a network store many
    parallelism: int = 3
    #: how many small objects (manifests, indexes) to read or list at once: one where
    #: a read costs microseconds and its parsing holds the GIL, many over a network
    lookups: int = 3
    #: listing is slow and billed (S3: one request per 1000 names, each priced as ten
    #: reads): `backup list` then believes a current index without listing (index.py)
    costly_listing: bool = False
    #: the block size of a new store here: blocks are the unit of dedup and of
    #: requests, so a store whose requests are dear wants bigger ones
    default_block_size: int = 1 << 20
    #: the objects are files on this host's own disks (vfs://), which a restore's writes
    #: share: it then writes through the page cache and flushes once, so that reads and
    #: writes do not interleave; from a network store each block is written as it arrives
    #: (O_DIRECT), so that the disk works while the next blocks travel (restore.py)
    local_disk: bool = False
    #: a look-up is a request of its own (S3: a HEAD), a cost beside the upload it may
    #: save: after a run of new blocks a backup asks about only some (lookups.py); on a
    #: local disk a stat costs far less than the write it saves, so every block is asked
    sampled_lookups: bool = False
    #: the key of the keyed BLAKE3 that names blocks in an encrypted store
    #: (`encrypted.EncryptedStore`); None: plain BLAKE3, as every plain store
    block_id_key: bytes | None = None

    @abstractmethod
    def put(self, key: str, data: Stored) -> None:
        """Store `data` under `key` atomically, replacing any older object.

        `data` may be a list of byte strings, stored concatenated.
        """

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The whole object; NotFound when it does not exist."""

    def get_at_most(
        self, key: str, max_size: int, what: str, *, view: bool = False, self_checked: bool = False
    ) -> bytes | memoryview:
        """The whole object, refused before it is read when it is bigger than
        `max_size` (what its format allows; `what` names it in the error).
        `view`: as `get_view` rather than `get`. `self_checked`: the caller
        checks the content against its name (a block's hash), so a store may
        skip a transfer checksum of its own."""
        check_size(self.size(key), max_size, f"{what} {key} in {self.url}")
        data = self.get_view(key) if view else self.get(key)
        check_size(len(data), max_size, f"{what} {key} in {self.url}")  # replaced since
        return data

    def get_view(self, key: str) -> bytes | memoryview:
        """Like `get`, but the result may be a view into a per-thread buffer
        that stays valid only until this thread's next `get_view`."""
        return self.get(key)

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object (for objects too big to hold in memory)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether `key` exists."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Every key that starts with `prefix`, across all pages, in no set order."""

    @abstractmethod
    def list_stamped(self, prefix: str) -> Iterator[tuple[str, str]]:
        """Like `list`, with each key's stamp: a short string that changes
        whenever the object is replaced (size and mtime of a file, size and
        ETag of an S3 object), so a cache of what an object says can be
        checked against a listing instead of reading the object."""

    def list_folders(self, prefix: str) -> Iterator[str]:
        """The names of the "folders" right under `prefix` (which ends with
        "/"): the next key component of every key that has more after it.
        Lets a caller list each folder apart, in parallel."""
        seen = set()
        for key in self.list(prefix):
            folder, slash, _rest = key[len(prefix):].partition("/")
            if slash and folder not in seen:
                seen.add(folder)
                yield folder

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; no error when it is already gone."""

    #: whether `warm` does anything (a reader starts no look-ahead otherwise)
    warms: bool = False

    def warm(self, key: str) -> None:  # noqa: B027 - an optional hook, a no-op unless a store overrides it
        """A hint that `key` will be read soon; never raises. Nothing by default."""

    def size(self, key: str) -> int:
        """Size in bytes of the stored object."""
        return len(self.get(key))

    def sync(self) -> None:  # noqa: B027 - an optional hook, a no-op unless a store overrides it
        """Make every completed put durable (before a manifest that refers to them)."""

    def close(self) -> None:  # noqa: B027 - an optional hook, a no-op unless a store overrides it
        """Release connections."""

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
