"""How big each object of a store may be, and decompression that stops there.

A store is input: anyone who can write to it can plant an object that claims
(or decompresses to) gigabytes. Every object is therefore checked against
what its format allows before it is read whole, and every decompression has
a hard cap on its output, whatever the compressed stream says about itself
(python-zstandard's one-shot `decompress` trusts a frame's declared content
size over `max_output_size`, so only streaming reads are used here).
"""

from __future__ import annotations

import zlib

import zstandard

from app.errors import Damaged, InvalidInput
from app.units import parse_size

# Block sizes a store config or a manifest may declare (read from a store: Convoy
# writes the NEW_ range only). New stores use their kind's default
# (`ObjectStore.default_block_size`) or what `convoy store init --block-size` asks.
MIN_BLOCK_SIZE = 4 << 10
MAX_BLOCK_SIZE = 64 << 20
NEW_MIN_BLOCK_SIZE = 64 << 10
NEW_MAX_BLOCK_SIZE = 16 << 20


def check_new_block_size(text: str) -> int:
    """The block size a user asked for a new store, in bytes: a power of two
    (block ranges stay aligned for direct I/O) from 64K to 16M."""
    size = parse_size(text)
    if size & (size - 1) or not NEW_MIN_BLOCK_SIZE <= size <= NEW_MAX_BLOCK_SIZE:
        raise InvalidInput(
            f"block size {text!r} is not one convoy can use: give a power of two from 64K to 16M, "
            "for example 1M (the default on vfs://) or 4M (the default on S3)"
        )
    return size

# Small JSON documents: store config, volume.json, locks, Convoy's volume.cfg.
MAX_SMALL_DOC = 64 << 10

# Backup manifests grow with the volume (~150 bytes of JSON per block, so
# ~150 MB for 1 TiB at 1 MiB blocks). The decompressed JSON may be at most
# MANIFEST_RATIO times the stored object (a manifest is one zstd frame and
# nothing else, so appended bytes cannot raise the cap) but always
# MANIFEST_FLOOR, and never more than MAX_MANIFEST (about 7 TiB of data at
# 1 MiB blocks). Block maps compress 3-5x (hashes do not compress), but a
# tree of empty files with one mtime has no hashes and compresses ~100x
# (tests/backup/test_hostile_store.py measures it), hence 256.
MAX_MANIFEST = 1 << 30
MANIFEST_FLOOR = 32 << 20
MANIFEST_RATIO = 256

# A volume's backup index (index.py) caches ~700 bytes of JSON per backup:
# this is ~90,000 backups of one volume. The stored (compressed) object is
# refused above the same size before it is read; a volume with more backups
# than fit lists from its manifests, as without an index.
MAX_INDEX = 64 << 20

# rancher/convoy 0.5.2: device-mapper blocks are gzip of one 2 MiB block;
# a backup's .cfg lists ~100 bytes of JSON per block (~50 MB per TiB).
LEGACY_BLOCK_SIZE = 2 << 20
LEGACY_MAX_STORED_BLOCK = LEGACY_BLOCK_SIZE + LEGACY_BLOCK_SIZE // 64  # stored deflate blocks add a little
MAX_LEGACY_BACKUP_CFG = 256 << 20

_CHUNK = 1 << 20


class ObjectTooLarge(Damaged):
    """A stored object is bigger than its format allows (before or after decompression)."""


def compress_bound(length: int) -> int:
    """The largest zstd frame any encoder makes of `length` bytes (ZSTD_COMPRESSBOUND),
    plus room for the optional frame fields (dictionary id, checksum)."""
    margin = ((128 << 10) - length) >> 11 if length < 128 << 10 else 0
    return length + (length >> 8) + margin + 32


def manifest_cap(stored_size: int) -> int:
    """The most JSON a stored manifest of `stored_size` bytes may decompress to."""
    return min(MAX_MANIFEST, max(MANIFEST_FLOOR, MANIFEST_RATIO * stored_size))


def zstd_frame_size(data: bytes | memoryview, what: str) -> int:
    """The stored size of the zstd frame `data` starts with, from its headers
    alone (ZSTD_findFrameCompressedSize; RFC 8878, section 3.1.1)."""
    view = memoryview(data)
    if len(view) < 6 or bytes(view[:4]) != b"\x28\xb5\x2f\xfd":
        raise Damaged(f"{what} cannot be decompressed (it is not a zstd frame)")
    descriptor = view[4]
    single_segment = descriptor >> 5 & 1
    content_size_bytes = (single_segment, 2, 4, 8)[descriptor >> 6]
    pos = 5 + (not single_segment) + (0, 1, 2, 4)[descriptor & 3] + content_size_bytes
    while True:
        if pos + 3 > len(view):
            raise Damaged(f"{what} cannot be decompressed (it is truncated)")
        header = int.from_bytes(view[pos : pos + 3], "little")
        kind, size = header >> 1 & 3, header >> 3
        if kind == 3:
            raise Damaged(f"{what} cannot be decompressed (a block of reserved type)")
        pos += 3 + (1 if kind == 1 else size)  # an RLE block stores one byte
        if header & 1:  # the last block
            return pos + 4 * (descriptor >> 2 & 1)  # and the optional checksum


def zstd_decompress_capped(data: bytes | memoryview, cap: int, what: str) -> bytearray:
    """Decompress one zstd frame, failing as soon as the output passes `cap` bytes."""
    out = bytearray()
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=False)
        while chunk := reader.read(min(_CHUNK, cap + 1 - len(out))):
            out += chunk
            if len(out) > cap:
                raise ObjectTooLarge(
                    f"{what} decompresses to more than {cap} bytes, more than its format allows; the store is damaged"
                )
    except zstandard.ZstdError as e:
        raise Damaged(f"{what} cannot be decompressed ({e})") from None
    return out


def gunzip_capped(data: bytes | memoryview, cap: int, what: str) -> bytes:
    """Decompress one gzip member, failing when it holds more than `cap` bytes."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, cap + 1)
    except zlib.error as e:
        raise Damaged(f"{what} cannot be decompressed ({e})") from None
    if len(out) > cap:
        raise ObjectTooLarge(f"{what} decompresses to more than {cap} bytes, more than its format allows; the store is damaged")
    if not inflater.eof:
        raise Damaged(f"{what} cannot be decompressed (it is truncated)")
    return out


def check_size(size: int, cap: int, what: str) -> None:
    if size > cap:
        raise ObjectTooLarge(f"{what} is {size} bytes, more than the {cap} its format allows; the store is damaged")
