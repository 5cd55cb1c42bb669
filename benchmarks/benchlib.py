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


def _run(*cmd: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


class Restic:
    """`restic` on one repository (a directory, or `s3:http://host:port/bucket` with the AWS_* variables in `env`),
    with its password and its own cache directory, so nothing of the user's is read or left behind."""

    def __init__(self, repo: str, cache: Path, env: dict[str, str] | None = None):
        self.env = {**os.environ, **(env or {}), "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": repo,
                    "RESTIC_CACHE_DIR": str(cache)}

    def __call__(self, *args: str) -> str:
        return _run("restic", *args, env=self.env)

    def version(self) -> str:
        return self("version").split(" compiled")[0].strip()

    def init(self) -> None:
        self("init")

    def backup(self, path: Path) -> None:
        self("backup", "--quiet", str(path))

    def restore(self, target: Path) -> None:
        """The latest snapshot under `target` (restic recreates each file's full path there)."""
        self("restore", "latest", "--target", str(target))
