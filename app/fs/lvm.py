"""LVM thin volumes through the lvm2 tools: create, snapshot, activate, remove, and the pool's devices.

LVM keeps its own metadata (and its own crash safety) for thin volumes, so
these are plain calls. Without udev (a plugin's container), LVM is told not
to wait for it and makes its nodes itself (`--config` below).
"""

from __future__ import annotations

import os

from app.errors import ConvoyError, NotFound, Unavailable
from app.fs import command, dmsetup

command.PACKAGES.update({"lvm": "lvm2"})
TIMEOUT = 60.0


def _config() -> list[str]:
    if os.path.exists("/run/udev/control"):
        return []
    return ["--config", "activation { udev_sync = 0 udev_rules = 0 } devices { obtain_device_list_from_udev = 0 }"]


def _lvm(*args: str, subject: str, todo: str, error: type[ConvoyError] = Unavailable) -> str:
    return command.run(["lvm", *args, *_config()], subject=subject, todo=todo, timeout=TIMEOUT, error=error).stdout


def dm_name(vg: str, lv: str) -> str:
    """The device-mapper name LVM gives VG/LV: each name's dashes doubled, joined by one dash."""
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


def exists(vg: str, lv: str) -> bool:
    out = _lvm("lvs", "--noheadings", "-o", "lv_name", vg, subject=f"volume group {vg}", todo="check that it exists (vgs)")
    return lv in out.split()


def thin_id(vg: str, lv: str) -> int:
    out = _lvm(
        "lvs", "--noheadings", "-o", "thin_id", f"{vg}/{lv}", subject=f"{vg}/{lv}", todo="check it with lvs", error=NotFound
    )
    return int(out.strip())


def pool_check(vg: str, pool: str) -> None:
    out = _lvm(
        "lvs",
        "--noheadings",
        "-o",
        "segtype",
        f"{vg}/{pool}",
        subject=f"dm.lvm_thinpool={vg}/{pool}",
        todo="give an existing thin pool (lvs -o vg_name,lv_name -S segtype=thin-pool)",
        error=NotFound,
    )
    if out.strip() != "thin-pool":
        raise NotFound(f"dm.lvm_thinpool={vg}/{pool} is a {out.strip()} volume, not a thin pool: give a thin pool's VG/LV")


def activate(vg: str, lv: str, *, skip_flag: bool = False) -> str:
    """Activate VG/LV (snapshots carry LVM's activation-skip flag: -K overrides it); its /dev/mapper node."""
    _lvm("lvchange", "-ay", *(["-K"] if skip_flag else []), f"{vg}/{lv}", subject=f"{vg}/{lv}", todo="see lvchange's complaint")
    name = dm_name(vg, lv)
    dmsetup.wait_node(name)
    return dmsetup.device_path(name)


def deactivate(vg: str, lv: str) -> None:
    _lvm("lvchange", "-an", f"{vg}/{lv}", subject=f"{vg}/{lv}", todo="something holds it open: unmount it first")


def create_thin(vg: str, pool: str, lv: str, size: int) -> None:
    _lvm(
        "lvcreate",
        "--thin",
        "-V",
        f"{size}b",
        "-n",
        lv,
        "-y",
        f"{vg}/{pool}",
        "--setactivationskip",
        "n",
        subject=f"thin volume {vg}/{lv}",
        todo="see lvcreate's complaint (is the pool full?)",
    )
    deactivate(vg, lv)  # created detached, as every back-end's devices are


def create_snapshot(vg: str, origin: str, lv: str) -> None:
    """A thin snapshot (LVM suspends the origin, freezing its file system, for the instant it takes)."""
    _lvm(
        "lvcreate",
        "-s",
        "-n",
        lv,
        f"{vg}/{origin}",
        subject=f"snapshot {vg}/{lv} of {origin}",
        todo="see lvcreate's complaint (is the pool full?)",
    )


def remove(vg: str, lv: str) -> None:
    if exists(vg, lv):
        _lvm("lvremove", "-f", f"{vg}/{lv}", subject=f"{vg}/{lv}", todo="something holds it open: unmount it first")


def extend(vg: str, lv: str, size: int) -> None:
    _lvm("lvextend", "-L", f"{size}b", f"{vg}/{lv}", subject=f"{vg}/{lv}", todo="see lvextend's complaint")


def size_of(vg: str, lv: str) -> int:
    out = _lvm(
        "lvs",
        "--noheadings",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        "lv_size",
        f"{vg}/{lv}",
        subject=f"{vg}/{lv}",
        todo="check it with lvs",
        error=NotFound,
    )
    return int(out.strip())


def activate_pool(vg: str, pool: str) -> None:
    _lvm("lvchange", "-ay", f"{vg}/{pool}", subject=f"thin pool {vg}/{pool}", todo="see lvchange's complaint")
