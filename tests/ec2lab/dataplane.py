"""The EBS side of the data plane: where a real EC2 instance shows an attached volume. The files, loop devices and
links themselves are tests/labs/dataplane.py, shared with the DigitalOcean emulator; its names are re-exported here so
the rest of ec2lab keeps calling `dataplane.attach(...)` and friends."""

from __future__ import annotations

from pathlib import Path

from tests.labs.dataplane import (  # noqa: F401 - re-exported: ec2lab's modules and tests use them through this module
    GIB,
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

NVME_PREFIX = "nvme-Amazon_Elastic_Block_Store_"


def link_path(dev_root: Path, platform: str, volume_id: str, device: str) -> Path:
    """Where a real instance shows the attached volume (see cloud-lab.md: Nitro's NVMe serial, Xen's xvd name)."""
    if platform == "nitro":
        return dev_root / "disk" / "by-id" / (NVME_PREFIX + volume_id.replace("-", ""))
    name = Path(device).name
    return dev_root / ("xvd" + name[2:] if name.startswith("sd") else name)
