"""Device-mapper thin pools on loop files, for the tests inside the guest (real dm-thin, real dmsetup)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

CONVOY_BLOCK_SECTORS = 4096  # Convoy's dm.thinpoolblocksize default: 2 MiB chunks
SECTOR = 512


def sh(*args: str | Path) -> str:
    """Run a command; a failure shows the command and its stderr."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


def attach_loop(path: Path) -> str:
    return sh("losetup", "--find", "--show", path).strip()


def device_number(dm_name: str) -> str:
    """'major:minor' of a device-mapper device."""
    return sh("dmsetup", "info", "-c", "--noheadings", "-o", "major,minor", "--separator", ":", dm_name).strip()


def dm_names() -> list[str]:
    listing = sh("dmsetup", "ls").strip()
    return [] if listing.startswith("No devices") else [line.split()[0] for line in listing.splitlines()]


def thin_devices_of(pool: str) -> list[str]:
    """The active thin devices whose table points at `pool` (by its device number)."""
    number = device_number(pool)
    found = []
    for name in dm_names():
        table = sh("dmsetup", "table", name).split()
        if len(table) > 3 and table[2] == "thin" and table[3] in (number, f"/dev/mapper/{pool}"):
            found.append(name)
    return found


def unmount_device(dm_name: str) -> None:
    """Unmount every mount of a dm device (a test that failed half-way may leave one)."""
    number = device_number(dm_name)
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info if line.split()[2] == number]
    for point in reversed(points):
        subprocess.run(["umount", "-l", point], check=False)


@dataclass
class PoolDevices:
    """A data and a metadata loop device for a pool named `name` (not created: see ThinPool.create)."""

    datadev: str
    metadatadev: str
    name: str


@dataclass
class ThinPool(PoolDevices):
    """An active dm-thin pool: /dev/mapper/<name>, with helpers for thin devices by id."""

    block_sectors: int = CONVOY_BLOCK_SECTORS

    @property
    def path(self) -> str:
        return f"/dev/mapper/{self.name}"

    def create(self) -> ThinPool:
        # a zeroed first metadata block makes the kernel format fresh metadata
        sh("dd", "if=/dev/zero", f"of={self.metadatadev}", "bs=4096", "count=1", "oflag=direct", "status=none")
        sectors = int(sh("blockdev", "--getsz", self.datadev))
        # low water mark 0, and skip_block_zeroing off: a new thin device reads zeros, as a volume must
        table = f"0 {sectors} thin-pool {self.metadatadev} {self.datadev} {self.block_sectors} 0"
        sh("dmsetup", "create", self.name, "--table", table)
        return self

    def message(self, text: str) -> None:
        sh("dmsetup", "message", self.path, "0", text)

    def activate(self, device_id: int, size_bytes: int, name: str | None = None) -> str:
        """Map thin device `device_id` as /dev/mapper/<name> (default <pool>-<id>); returns its path."""
        name = name or f"{self.name}-{device_id}"
        sh("dmsetup", "create", name, "--table", f"0 {size_bytes // SECTOR} thin {self.path} {device_id}")
        return f"/dev/mapper/{name}"

    def create_thin(self, device_id: int, size_bytes: int) -> str:
        self.message(f"create_thin {device_id}")
        return self.activate(device_id, size_bytes)

    def status(self) -> list[str]:
        """The pool's dmsetup status fields (transaction id, used/total metadata and data blocks, ...)."""
        return sh("dmsetup", "status", self.name).split()


def remove_active_devices(pool: str) -> None:
    """What a reboot does to a pool: its mounts, its active thin devices and the pool itself are gone (the
    loop devices under it stay, as disks would)."""
    if pool in dm_names():
        for thin in thin_devices_of(pool):
            unmount_device(thin)
            sh("dmsetup", "remove", "--retry", thin)
        sh("dmsetup", "remove", "--retry", pool)


def remove_pool(devices: PoolDevices) -> None:
    """Tear down whatever a test left: the pool's mounts and thin devices, the pool, the loop devices."""
    remove_active_devices(devices.name)
    for loop in (devices.datadev, devices.metadatadev):
        subprocess.run(["losetup", "-d", loop], check=False)
