"""The devicemapper back-end's daemon options (`--driver-opts dm.*`), checked before the pool is touched.

Convoy's names are kept (`dm.datadev`, `dm.metadatadev`, `dm.thinpoolname`,
`dm.thinpoolblocksize`, `dm.defaultvolumesize`, `dm.fs`); the rest are new:
`dm.lvm_thinpool` uses an existing LVM thin pool instead of two devices,
`dm.autoextend` says when the pool's use is reported as needing more room,
and `dm.min_free_space` when creates and snapshots are refused. An error
names the option, the value and what is valid: the daemon does not start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import InvalidInput
from app.fs.filesystems import check_name
from app.units import format_size, parse_size

DEFAULT_POOL = "convoy-pool"
DEFAULT_BLOCK_SECTORS = 4096  # 2 MiB, Convoy's default: the unit of thin_delta's changes
MIN_BLOCK_SECTORS = 128  # dm-thin's limits: 64 KiB to 1 GiB, in multiples of 64 KiB
MAX_BLOCK_SECTORS = 2097152
DEFAULT_SIZE = "100G"
DEFAULT_AUTOEXTEND = 80  # percent of data or metadata used: reported past it
DEFAULT_MIN_FREE = 10  # percent free below which creates and snapshots are refused
# dm names: letters, digits and - _ . + (no '/', which /dev/mapper cannot hold); room left for "-<id>"
POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
LVM_NAME = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$")

DAEMON_OPTIONS = {
    "dm.datadev": "block device (or file, attached to a loop device) holding the thin pool's data",
    "dm.metadatadev": "block device (or file) holding the thin pool's metadata (1 GiB covers a 1 TiB pool)",
    "dm.thinpoolname": f"name of the thin pool's device-mapper device (default {DEFAULT_POOL})",
    "dm.thinpoolblocksize": f"pool block size in 512-byte sectors, 128 to 2097152 in steps of 128 "
    f"(default {DEFAULT_BLOCK_SECTORS} = 2 MiB)",
    "dm.defaultvolumesize": f"size of a volume created without one (default {DEFAULT_SIZE}; thin: costs nothing until written)",
    "dm.fs": "file system made on a new volume: ext4 (default) or xfs",
    "dm.lvm_thinpool": "VG/POOL: use this existing LVM thin pool instead of dm.datadev and dm.metadatadev",
    "dm.autoextend": f"percent of the pool's data or metadata in use past which convoy warns that the pool "
    f"needs extending (default {DEFAULT_AUTOEXTEND}; 0: never)",
    "dm.min_free_space": f"percent of the pool's data or metadata that must stay free for a new volume or "
    f"snapshot (default {DEFAULT_MIN_FREE}; 0: never refuse)",
}


@dataclass(frozen=True)
class LvmPool:
    vg: str
    pool: str

    def __str__(self) -> str:
        return f"{self.vg}/{self.pool}"


@dataclass(frozen=True)
class DmOptions:
    datadev: str | None
    metadatadev: str | None
    pool_name: str
    block_sectors: int
    default_size: int
    fs: str
    lvm: LvmPool | None
    autoextend: int
    min_free: int

    @property
    def block_bytes(self) -> int:
        return self.block_sectors * 512


def parse(options: dict[str, str]) -> DmOptions:
    """The daemon's `dm.*` options, or InvalidInput naming the wrong one."""
    lvm = _lvm_pool(options.get("dm.lvm_thinpool") or None)
    datadev = options.get("dm.datadev") or None
    metadatadev = options.get("dm.metadatadev") or None
    if lvm is not None:
        given = [key for key in ("dm.datadev", "dm.metadatadev", "dm.thinpoolname", "dm.thinpoolblocksize") if options.get(key)]
        if given:
            raise InvalidInput(
                f"dm.lvm_thinpool={lvm} uses that LVM pool as it is: drop {', '.join(given)} "
                "(they describe a pool convoy makes itself)"
            )
    elif not (datadev and metadatadev):
        missing = " and ".join(key for key in ("dm.datadev", "dm.metadatadev") if not options.get(key))
        raise InvalidInput(
            f"the devicemapper back-end needs {missing}: give two block devices (or files) for the thin pool's "
            "data and metadata, or dm.lvm_thinpool=VG/POOL to use an existing LVM thin pool"
        )
    elif datadev == metadatadev:
        raise InvalidInput(f"dm.datadev and dm.metadatadev are both {datadev}: the pool needs two separate devices")
    pool_name = options.get("dm.thinpoolname") or DEFAULT_POOL
    if not POOL_NAME.fullmatch(pool_name):
        raise InvalidInput(
            f"dm.thinpoolname={pool_name!r} is not a usable device-mapper name: 1 to 100 letters, digits, "
            "'-', '_', '.' or '+', starting with a letter or digit"
        )
    default_size = _size(options.get("dm.defaultvolumesize") or DEFAULT_SIZE, "dm.defaultvolumesize")
    fs = options.get("dm.fs") or "ext4"
    try:
        fs = check_name(fs)
    except InvalidInput:
        raise InvalidInput(f"dm.fs={fs!r} is not a file system convoy makes: use ext4 or xfs") from None
    return DmOptions(
        datadev=datadev if lvm is None else None,
        metadatadev=metadatadev if lvm is None else None,
        pool_name=pool_name,
        block_sectors=_block_sectors(options.get("dm.thinpoolblocksize")),
        default_size=default_size,
        fs=fs,
        lvm=lvm,
        autoextend=_percent(options.get("dm.autoextend"), DEFAULT_AUTOEXTEND, "dm.autoextend"),
        min_free=_percent(options.get("dm.min_free_space"), DEFAULT_MIN_FREE, "dm.min_free_space"),
    )


def _lvm_pool(value: str | None) -> LvmPool | None:
    if value is None:
        return None
    vg, slash, pool = value.partition("/")
    if not slash or not LVM_NAME.fullmatch(vg) or not LVM_NAME.fullmatch(pool):
        raise InvalidInput(
            f"dm.lvm_thinpool={value!r} is not VG/POOL: give the volume group and the thin pool's LV name, "
            "as `lvs -o vg_name,lv_name -S segtype=thin-pool` lists them"
        )
    return LvmPool(vg, pool)


def _block_sectors(value: str | None) -> int:
    if not value:
        return DEFAULT_BLOCK_SECTORS
    try:
        sectors = int(value)
    except ValueError:
        raise InvalidInput(
            f"dm.thinpoolblocksize={value!r} is not a number of 512-byte sectors: give one like {DEFAULT_BLOCK_SECTORS} (2 MiB)"
        ) from None
    if not MIN_BLOCK_SECTORS <= sectors <= MAX_BLOCK_SECTORS or sectors % MIN_BLOCK_SECTORS:
        raise InvalidInput(
            f"dm.thinpoolblocksize={value} is not a thin pool block size: give {MIN_BLOCK_SECTORS} to "
            f"{MAX_BLOCK_SECTORS} sectors in multiples of {MIN_BLOCK_SECTORS} (default {DEFAULT_BLOCK_SECTORS} = 2 MiB)"
        )
    return sectors


def _size(value: str, option: str) -> int:
    try:
        size = parse_size(value)
    except InvalidInput as err:
        raise InvalidInput(f"{option}={value!r}: {err}") from None
    if size < 16 << 20:
        raise InvalidInput(f"{option}={value} ({format_size(size)}) is too small for a volume: give at least 16M")
    return size


def _percent(value: str | None, default: int, option: str) -> int:
    if value is None or value.strip() == "":
        return default
    text = value.strip().removesuffix("%")
    if not text.isdigit() or not 0 <= int(text) <= 99:
        raise InvalidInput(f"{option}={value!r} is not a percentage: give a whole number from 0 to 99 (default {default})")
    return int(text)
