"""The back-ends the driver suite runs against, and what each keeps where.

A new back-end joins the suite by adding a `Backend` here: how to start a
daemon on it, where its storage of a volume lives (so a test can check that
a delete removed or kept it) and how to plant storage that exists before
convoy (so a test can check adoption).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.daemon_harness import Daemon


@dataclass(frozen=True)
class Backend:
    id: str
    driver: str
    #: driver options, given the test's scratch directory (an XFS one where reflinks matter)
    options: dict[str, str] = field(default_factory=dict)
    on_xfs: bool = False
    #: what its snapshots are: "tree" or "block"
    snapshots: str = "tree"

    def daemon_args(self, storage: Path) -> list[str]:
        args = ["--drivers", self.driver]
        for key, value in self.options.items():
            args += ["--driver-opts", f"{key}={value.format(storage=storage)}"]
        return args

    def storage_of(self, daemon: Daemon, storage: Path, name: str) -> Path:
        """The file or directory that holds the volume's data."""
        if self.driver == "vfs":
            return storage / "vfs" / name
        return storage / "images" / f"{name}.img"

    def plant(self, daemon: Daemon, storage: Path, name: str, files: dict[str, bytes]) -> None:
        """Storage of a volume made before convoy knew it (a directory, an image with a file system)."""
        where = self.storage_of(daemon, storage, name)
        where.parent.mkdir(parents=True, exist_ok=True)
        if self.driver == "vfs":
            where.mkdir()
            for rel, data in files.items():
                (where / rel).write_bytes(data)
            return
        with open(where, "wb") as image:
            image.truncate(64 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(where)], check=True)
        mnt = storage / f"plant-{name}"
        mnt.mkdir()
        subprocess.run(["mount", "-o", "loop", str(where), str(mnt)], check=True)
        try:
            for rel, data in files.items():
                (mnt / rel).write_bytes(data)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
            mnt.rmdir()


BACKENDS = [
    Backend("vfs", "vfs", {"vfs.path": "{storage}/vfs"}),
    Backend("image-xfs", "image", {"image.path": "{storage}/images"}, on_xfs=True, snapshots="block"),
    Backend("image-copy", "image", {"image.path": "{storage}/images"}, snapshots="block"),
]


def loop_devices_of(directory: Path) -> dict[str, str]:
    """Loop devices whose backing file is below `directory`: device -> file."""
    prefix = str(directory).rstrip("/") + "/"
    found = {}
    for name in os.listdir("/sys/block"):
        path = f"/sys/block/{name}/loop/backing_file"
        if name.startswith("loop") and os.path.exists(path):
            with open(path) as f:
                backing = f.read().strip()
            if backing.startswith(prefix):
                found[f"/dev/{name}"] = backing
    return found

