"""The bytes behind the API: sparse files, loop devices and the device links a real instance's udev would make.

The emulator never touches a path it did not make: `owned` (kept in the state file) maps every link it made to its
target, and a link path that exists but is not in it is refused (LinkRefused), so a run pointed at /dev can never
replace a real /dev/xvdf.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from pathlib import Path

GIB = 1 << 30
NVME_PREFIX = "nvme-Amazon_Elastic_Block_Store_"
TIMEOUT = 60  # seconds for any one losetup or cp: a hung tool must not hang the emulator


class LinkRefused(Exception):
    """A device link's path is taken by something the emulator did not make."""


def link_path(dev_root: Path, platform: str, volume_id: str, device: str) -> Path:
    """Where a real instance shows the attached volume (see cloud-lab.md: Nitro's NVMe serial, Xen's xvd name)."""
    if platform == "nitro":
        return dev_root / "disk" / "by-id" / (NVME_PREFIX + volume_id.replace("-", ""))
    name = Path(device).name
    return dev_root / ("xvd" + name[2:] if name.startswith("sd") else name)


def _run(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=TIMEOUT).stdout.strip()


def create_file(path: Path, size_gib: int, source: Path | None = None) -> None:
    """A sparse file of the volume's size; from `source` (a snapshot) a reflink copy where the file system can."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if source is not None:
        copy_file(source, path)
    else:
        path.touch()
    if path.stat().st_size < size_gib * GIB:
        os.truncate(path, size_gib * GIB)


def copy_file(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run("cp", "--reflink=auto", "--sparse=always", str(source), str(dest))


def grow_file(path: Path, size_gib: int) -> None:
    os.truncate(path, size_gib * GIB)


def attach(file: Path, link: Path, owned: dict[str, str]) -> str:
    """Make a loop device for `file` and `link` to it; return the loop device. `owned` gets the link."""
    if os.path.lexists(link) and str(link) not in owned:
        raise LinkRefused(f"{link} exists and was not made by the emulator; it is left alone")
    loop = _run("losetup", "-f", "--show", str(file))
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(link):
            link.unlink()  # our own stale link, from before a crash
        link.symlink_to(loop)
    except OSError:
        _run("losetup", "-d", loop)
        raise
    owned[str(link)] = loop
    return loop


def refresh_size(loop: str) -> None:
    """The kernel learns the file's new size, as a real instance sees a modified EBS volume grow."""
    _run("losetup", "-c", loop)


def busy(loop: str) -> bool:
    """Is the device mounted or held (in any mount namespace)? The kernel refuses an exclusive open then."""
    try:
        fd = os.open(loop, os.O_RDONLY | os.O_EXCL)
    except OSError as e:
        return e.errno == errno.EBUSY  # any other error: gone already, nothing holds it
    os.close(fd)
    return False


def detach(loop: str | None, link: str | None, owned: dict[str, str]) -> None:
    """Remove the link (only if it is still ours) and the loop device; a held device goes when released."""
    if link:
        if os.path.islink(link) and os.readlink(link) == owned.get(link):
            os.unlink(link)
        owned.pop(link, None)
    if loop and backing_file(loop) is not None:
        subprocess.run(["losetup", "-d", loop], capture_output=True, timeout=TIMEOUT, check=False)


def backing_file(loop: str) -> str | None:
    """The file behind /dev/loopN, or None when it backs nothing."""
    match = re.fullmatch(r"/dev/(loop\d+)", loop)
    if not match:
        return None
    try:
        text = Path(f"/sys/block/{match.group(1)}/loop/backing_file").read_text().strip()
    except OSError:
        return None
    return text.removesuffix(" (deleted)")


def loops_backed_under(directory: Path) -> list[str]:
    """Every loop device whose backing file lies under `directory`: what a cleanup must remove."""
    found = []
    prefix = str(directory.resolve()) + "/"
    for entry in Path("/sys/block").glob("loop*"):
        loop = f"/dev/{entry.name}"
        backing = backing_file(loop)
        if backing and backing.startswith(prefix):
            found.append(loop)
    return sorted(found)
