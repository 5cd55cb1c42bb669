"""Blocks: content-addressed, zstd-compressed pieces of data.

A block is named by the BLAKE3 hash (256 bits, hex) of its uncompressed
bytes. BLAKE3 rather than SHA-256: it is a cryptographic hash with the same
collision resistance for naming content, and on this hardware it runs at
several GB/s per core against ~1.7 GB/s for SHA-256, so hashing never limits
a backup. Naming by the uncompressed content means the same data dedups
whatever compression level wrote it. Both BLAKE3 and zstd release the GIL,
so blocks are hashed and compressed in parallel threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import blake3
import zstandard

from app.errors import Damaged

from . import layout, limits
from .objectstore import ObjectStore

ZSTD_LEVEL = 1  # fast; random data is stored in raw zstd blocks at ~no cost
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def digest(data: bytes | memoryview, key: bytes | None = None) -> str:
    """A block's name: BLAKE3, keyed in an encrypted store (`ObjectStore.block_id_key`)."""
    return (blake3.blake3(data, key=key) if key else blake3.blake3(data)).hexdigest()


SAMPLE = 64 * 1024
INCOMPRESSIBLE = 0.97  # a sample that shrinks less than 3% is stored raw
_RAW_BLOCK = 128 * 1024  # zstd's largest block
_MAGIC = (0xFD2FB528).to_bytes(4, "little")


def _raw_frame(data: memoryview) -> list[bytes | memoryview]:
    """A standard zstd frame of raw (stored) blocks: no compression work, no copy.

    Frame header: magic, descriptor 0xE0 (single segment, 8-byte content
    size), content size; then 3-byte block headers each followed by up to
    128 KiB of the data itself. Any zstd decoder reads it.
    """
    n = len(data)
    parts: list[bytes | memoryview] = [_MAGIC + bytes([0xE0]) + n.to_bytes(8, "little")]
    if n == 0:
        parts.append((1).to_bytes(3, "little"))  # last, raw, empty
        return parts
    for start in range(0, n, _RAW_BLOCK):
        size = min(_RAW_BLOCK, n - start)
        last = 1 if start + size >= n else 0
        parts.append((last | (size << 3)).to_bytes(3, "little"))
        parts.append(data[start : start + size])
    return parts


def encode(data: bytes | memoryview) -> bytes | list[bytes | memoryview]:
    """The stored form of a block: bytes, or a list of byte strings to write in order.

    Incompressible data (judged from a 64 KiB sample) becomes a raw zstd
    frame that references the data instead of copying it through zstd.
    """
    view = memoryview(data).cast("B")
    if len(view) > 2 * SAMPLE:
        sample = _compressor().compress(view[:SAMPLE])
        if len(sample) > SAMPLE * INCOMPRESSIBLE:
            return _raw_frame(view)
    return _compressor().compress(view)


def stored_size(encoded: bytes | list[bytes | memoryview]) -> int:
    return len(encoded) if isinstance(encoded, (bytes, bytearray)) else sum(len(p) for p in encoded)


class BlockDamaged(Damaged):
    """A stored block does not decode to the content its name promises."""


@dataclass(frozen=True)
class Block:
    digest: str
    length: int


def decode_into(
    stored: bytes | memoryview, expected_digest: str, expected_length: int, out: memoryview, key: bytes | None = None
) -> memoryview:
    """Decompress a block into the caller's buffer `out` (at least `expected_length`
    bytes) and check it against its name (`key`: the store's `block_id_key`)."""
    try:
        reader = _decompressor().stream_reader(stored, read_across_frames=False)
        got = 0
        while got < expected_length:
            n = reader.readinto(out[got:expected_length])
            if not n:
                break
            got += n
        extra = reader.read(1)
    except zstandard.ZstdError as e:
        raise BlockDamaged(f"block {expected_digest} is corrupted (cannot decompress: {e})") from None
    if got != expected_length or extra:
        raise BlockDamaged(f"block {expected_digest} is corrupted: it does not hold {expected_length} bytes")
    data = out[:expected_length]
    if digest(data, key) != expected_digest:
        raise BlockDamaged(f"block {expected_digest} is corrupted: its content does not match its hash")
    return data


def fetch(store: ObjectStore, expected_digest: str, expected_length: int) -> bytes | memoryview:
    """The stored form of a block (as `ObjectStore.get_view`), refused before it
    is read when it is bigger than any zstd frame of `expected_length` bytes."""
    try:
        return store.get_at_most(
            layout.block_key(expected_digest), limits.compress_bound(expected_length), "block", view=True, self_checked=True
        )
    except Damaged as e:  # too big, or (encrypted store) failing authentication: this block, not the backup
        raise BlockDamaged(f"block {expected_digest} is corrupted: {e}") from None
