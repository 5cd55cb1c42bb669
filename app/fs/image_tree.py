"""Reading the file tree inside an image file: how an image backup restores into a directory volume.

The image comes from a backup store, which is not trusted: its file system
is checked read-only (fsck -n) before the kernel mounts it, and it is
mounted read-only, without devices, set-id or exec, on a loop device that
is itself read-only, so nothing is ever written to it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app import mounts
from app.errors import Damaged, Unavailable
from app.fs import filesystems, loop

log = logging.getLogger(__name__)


def check_restored(device: str, what: str) -> str:
    """The file system of an image restored from a store, checked before any mount parses it."""
    fs = filesystems.probe(device)
    if fs is None:
        raise Damaged(
            f"the image restored to {what} holds no file system (the backup is damaged or is not of a volume); "
            "restore an earlier backup"
        )
    filesystems.check(device, fs)
    return fs


@contextmanager
def mounted_read_only(image: Path, mountpoint: Path) -> Iterator[Path]:
    """Yield `mountpoint` with the image's file system mounted there, read-only."""
    device = loop.attach(str(image), read_only=True)
    try:
        fs = check_restored(device, str(image))
        mountpoint.mkdir(mode=0o700, exist_ok=True)
        filesystems.mount(device, str(mountpoint), fs, read_only=True)
        try:
            yield mountpoint
        finally:
            mounts.unmount(mountpoint)
    finally:
        loop.detach(device)


def copy_tree(source: Path, target: Path) -> None:
    """Copy everything under `source` into the existing directory `target`, as it is.

    `cp -a` keeps owners, modes, times, links, hard links, devices, fifos and
    extended attributes; sparse files stay sparse. `target` is a new volume
    below directories only root may enter, so what it holds is a container's
    data, never the host users'.
    """
    command = ["cp", "-a", "--sparse=always", "--", f"{source}/.", f"{target}/"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise Unavailable("cp is not installed: install coreutils") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise Unavailable(f"cannot copy the restored files into {target}: {first}")


def clean_scratch(root: Path) -> None:
    """Remove what a killed restore left below `root`: its mounts, loop devices and files."""
    if not root.exists():
        return
    prefix = str(root).rstrip("/") + "/"
    for path in sorted(mounts.mounted_paths(), reverse=True):
        if path.startswith(prefix):
            log.info("unmounting %s: a restore was interrupted there", path)
            mounts.unmount(Path(path))
    for device, backing in loop.attached().items():
        if backing.startswith(prefix):
            log.info("detaching %s (%s): a restore was interrupted", device, backing)
            loop.detach(device)
    shutil.rmtree(root, ignore_errors=True)
