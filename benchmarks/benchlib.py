"""What every benchmark here needs: a cold cache, random data, and a real file system on a disk-like loop device."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

MIB = 1 << 20


def drop_caches() -> None:
    """Write back and drop the page cache, so the next step reads from the disk."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def write_random_file(path: Path, size: int) -> None:
    """`size` bytes of random data (nothing to deduplicate or compress), on the disk when it returns."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 64 * MIB)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


class LoopFS:
    """An XFS (reflink=1) or ext4 on a preallocated image under `work`, attached with direct I/O."""

    def __init__(self, work: Path, kind: str, size: int):
        self.kind = kind
        self.image = work / f"{kind}.img"
        self.mnt = work / f"{kind}-mnt"
        self.dev: str | None = None
        self.mnt.mkdir()
        # allocated up front, as a disk is: a sparse image would make every first
        # write also allocate space in the host file system under the loop device
        with open(self.image, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, size)
        # direct I/O: the file system reads and writes the disk, not a second page cache of the image file
        self.dev = _run("losetup", "-f", "--show", "--direct-io=on", str(self.image)).strip()
        if kind == "xfs":
            _run("mkfs.xfs", "-q", "-m", "reflink=1", self.dev)
        else:
            _run("mkfs.ext4", "-q", "-F", self.dev)
        _run("mount", self.dev, str(self.mnt))

    def close(self) -> None:
        subprocess.run(["umount", str(self.mnt)], check=False, capture_output=True)
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], check=False, capture_output=True)
        self.image.unlink(missing_ok=True)


def _run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout
