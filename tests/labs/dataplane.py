"""The bytes behind an emulated cloud's volumes: sparse files, loop devices and the device links a real host's udev
would make. Shared by the emulators (tests/ec2lab, tests/dolab); each names its own links.

An emulator never touches a path it did not make: `owned` (kept in its state file) maps every link it made to its
target, and a link path that exists but is not in it is refused (LinkRefused), so a run pointed at /dev can never
replace a real device link. `remove_leftovers` is the teardown: every loop device backed by a file of the lab and every
link to one go, whatever state a test left them in.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

GIB = 1 << 30
TIMEOUT = 60  # seconds for any one losetup or cp: a hung tool must not hang the emulator


class LinkRefused(Exception):
    """A device link's path is taken by something the emulator did not make."""


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
    """The kernel learns the file's new size, as a real host sees a grown cloud volume."""
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


def remove_leftovers(state_dir: Path, recorded_links: Iterable[str]) -> None:
    """A lab's teardown (its process stopped): remove the links it recorded that point at its loop devices (or at
    nothing), unmount (lazily) whatever is still mounted on those devices, and detach them."""
    loops = loops_backed_under(state_dir) if state_dir.exists() else []
    for link in recorded_links:
        if os.path.islink(link) and (os.readlink(link) in loops or not os.path.exists(link)):
            os.unlink(link)
    for loop in loops:
        _unmount_everything_on(loop)
        subprocess.run(["losetup", "-d", loop], capture_output=True, timeout=TIMEOUT, check=False)


def _unmount_everything_on(loop: str) -> None:
    try:
        rdev = os.stat(loop).st_rdev
    except OSError:
        return
    wanted = f"{os.major(rdev)}:{os.minor(rdev)}"
    mountpoints = [
        line.split()[4].encode().decode("unicode_escape")
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[2] == wanted
    ]
    for mountpoint in reversed(mountpoints):
        subprocess.run(["umount", "-l", mountpoint], capture_output=True, timeout=TIMEOUT, check=False)
