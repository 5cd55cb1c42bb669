"""What the driver suite asks of a devicemapper back-end's storage: its pool files, its thin devices, its ledger.

Only used where the kernel has device-mapper (inside the guest of tests/guest).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA_SIZE = "4G"  # sparse files: they cost what the volumes write
METADATA_SIZE = "64M"


def sh(*args: str) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


def make_pool_files(storage: Path) -> None:
    for name, size in (("dm-data.img", DATA_SIZE), ("dm-metadata.img", METADATA_SIZE)):
        if not (storage / name).exists():
            sh("truncate", "-s", size, str(storage / name))


def dm_names() -> list[str]:
    listing = sh("dmsetup", "ls").strip()
    return [] if listing.startswith("No devices") else [line.split()[0] for line in listing.splitlines()]


def _devno(name: str) -> str:
    st = os.stat(f"/dev/mapper/{name}")
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def thin_devices(pool: str) -> dict[str, str]:
    """Active thin devices over `pool`: /dev/mapper path -> "thin <id>"."""
    if pool not in dm_names():
        return {}
    number = _devno(pool)
    found = {}
    for name in dm_names():
        table = sh("dmsetup", "table", name).split()
        if len(table) > 4 and table[2] == "thin" and table[3] in (number, f"/dev/mapper/{pool}"):
            found[f"/dev/mapper/{name}"] = f"thin {table[4]}"
    return found


def remove_pool(pool: str) -> None:
    """What a reboot takes away: the pool's mounts, its thin devices and the pool itself (the files stay)."""
    for device in thin_devices(pool):
        with open("/proc/self/mountinfo") as info:
            number = _devno(os.path.basename(device))
            points = [line.split()[4] for line in info if line.split()[2] == number]
        for point in reversed(points):
            subprocess.run(["umount", "-l", point], check=False)
        sh("dmsetup", "remove", "--retry", os.path.basename(device))
    if pool in dm_names():
        sh("dmsetup", "remove", "--retry", pool)


def ledger(root: Path, pool: str) -> dict[str, Any]:
    path = root / "devicemapper" / f"{pool}.json"
    return json.loads(path.read_text()) if path.exists() else {"next_id": 1, "devices": {}}


def volume_device(root: Path, pool: str, name: str) -> int | None:
    """The thin device id convoy records for volume `name` (kept or in use), or None."""
    for key, entry in ledger(root, pool)["devices"].items():
        if entry["kind"] == "volume" and entry["volume"] == name:
            return int(key)
    return None


def plant(daemon: Any, pool: str, name: str, fill: Callable[[str], None]) -> None:
    """A thin device holding a file system, left by `convoy delete -r` under `name` (what a create takes back):
    made in the live pool by hand, then recorded in the stopped daemon's ledger as kept."""
    record = ledger(daemon.root, pool)
    device_id = max([int(k) for k in record["devices"]] + [int(record["next_id"])]) + 1
    for _ in range(64):  # the pool may hold ids an earlier test's daemon made (its ledger is not this one)
        made = subprocess.run(["dmsetup", "message", pool, "0", f"create_thin {device_id}"], capture_output=True)
        if made.returncode == 0:
            break
        device_id += 1
    else:
        raise RuntimeError(f"no free thin device id in {pool} near {device_id}")
    size = 64 << 20
    sh("dmsetup", "create", f"{pool}-plant", "--table", f"0 {size // 512} thin /dev/mapper/{pool} {device_id}")
    try:
        fill(f"/dev/mapper/{pool}-plant")
    finally:
        sh("dmsetup", "remove", "--retry", f"{pool}-plant")
    daemon.stop()
    record["devices"][str(device_id)] = {
        "kind": "volume",
        "volume": name,
        "state": "kept",
        "size": size,
        "snapshot": None,
        "origin": None,
    }
    record["next_id"] = device_id + 1
    (daemon.root / "devicemapper" / f"{pool}.json").write_text(json.dumps(record))
    daemon.start()
