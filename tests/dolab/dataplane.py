"""The DigitalOcean side of the data plane: where a droplet shows an attached volume, DO's pre-formatting and a
snapshot's billable size. Files, loop devices and links are tests/labs/dataplane.py (shared with ec2lab), re-exported
here so the rest of dolab calls `dataplane.attach(...)` and friends."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.labs.dataplane import (  # noqa: F401 - re-exported: dolab's modules and tests use them through this module
    GIB,
    TIMEOUT,
    LinkRefused,
    attach,
    backing_file,
    busy,
    copy_file,
    create_file,
    detach,
    grow_file,
    loops_backed_under,
    refresh_size,
    remove_leftovers,
)

LINK_PREFIX = "scsi-0DO_Volume_"


def link_path(dev_root: Path, volume_name: str) -> Path:
    """A droplet's udev names an attached volume by its DO name: /dev/disk/by-id/scsi-0DO_Volume_<name>."""
    return dev_root / "disk" / "by-id" / (LINK_PREFIX + volume_name)


def make_filesystem(file: Path, fs_type: str, label: str) -> None:
    """DO's pre-formatting of a new volume (filesystem_type, filesystem_label)."""
    args = ["mkfs.ext4", "-F", "-q"] if fs_type == "ext4" else ["mkfs.xfs", "-f", "-q"]
    if label:
        args += ["-L", label]
    subprocess.run([*args, str(file)], check=True, capture_output=True, timeout=TIMEOUT)


def allocated_gib(file: Path) -> float:
    """The bytes a snapshot holds (its sparse copy's allocated blocks), in GiB, as DO bills it."""
    return round(file.stat().st_blocks * 512 / GIB, 2)
