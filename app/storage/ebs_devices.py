"""Where an attached EBS volume shows up on this host, and which name to ask for when attaching.

Nitro instances show an EBS volume as an NVMe disk whose serial is the
volume id without its dash; udev links it as
`/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123...`. Xen instances
show the name asked for in AttachVolume, `/dev/sdf` appearing as
`/dev/xvdf` (or as `/dev/sdf`). The name asked for must not be one the
instance uses already.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# what AWS recommends for EBS data volumes on Linux
CANDIDATES = tuple(f"/dev/sd{letter}" for letter in "fghijklmnop")


def free_name(in_use: Iterable[str]) -> str | None:
    """The first candidate name the instance does not use (`xvdf` and `sdf` are the same name)."""
    taken = {_canonical(name) for name in in_use}
    return next((name for name in CANDIDATES if _canonical(name) not in taken), None)


def _canonical(name: str) -> str:
    base = os.path.basename(name)
    return base[3:] if base.startswith("xvd") else base[2:] if base.startswith("sd") else base


def candidates_for(volume_id: str, attached_as: str | None, dev_root: Path) -> list[Path]:
    """Where the kernel may show this volume: the NVMe by-id link, then the Xen names."""
    paths = [dev_root / "disk" / "by-id" / f"nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"]
    if attached_as:
        letter = _canonical(attached_as)
        paths += [dev_root / f"xvd{letter}", dev_root / f"sd{letter}"]
    return paths


def local_device(volume_id: str, attached_as: str | None, dev_root: Path) -> str | None:
    """The block device this attached volume is on this host, when it has appeared."""
    for path in candidates_for(volume_id, attached_as, dev_root):
        if path.exists():
            return os.path.realpath(path)
    return None
