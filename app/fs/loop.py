"""Loop devices: a regular file seen as a block device.

Attach and detach go through losetup(8) (util-linux retries its own races for
a free device); what is attached is read from sysfs, without a subprocess,
because it is asked on every mount and at every start.
"""

from __future__ import annotations

import glob
import os
import re
import stat
import time

from app.errors import Conflict, InvalidInput, NotFound, Unavailable
from app.fs import command
from app.fs.filesystems import mountpoint_of

_SYS = "/sys/block"
_POLL = 0.02


def attach(image: str, *, read_only: bool = False, timeout: float = 10.0) -> str:
    """Attach the regular file `image` to a free loop device; "/dev/loopN".

    Returns once the device node exists and has the file's size, so the
    caller can probe, format or mount it at once.
    """
    path = os.path.realpath(image)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFound(f"image file {image} does not exist: it cannot be attached to a loop device") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"{image} is not a regular file: only an image file can be attached to a loop device")
    argv = ["losetup", "--find", "--show", *(["--read-only"] if read_only else []), path]
    out = command.run(
        argv,
        subject=image,
        timeout=timeout,
        todo="free unused loop devices (`losetup -a` lists them) or load the loop module with a larger max_loop",
    ).stdout
    device = command.first_line(out)
    if not re.fullmatch(r"/dev/loop\d+", device):
        raise Unavailable(
            f"losetup attached {image} but printed {device!r} instead of a loop device: check the host's util-linux"
        )
    want = st.st_size // 512 * 512  # a loop device ends at the last whole sector
    deadline = time.monotonic() + timeout
    while not (os.path.exists(device) and _size(device) == want):
        if time.monotonic() > deadline:
            detach(device)
            raise Unavailable(
                f"{device} for {image} did not appear with {want} bytes within {timeout:g} s: "
                "check that /dev is the host's devtmpfs and udev is not stalled"
            )
        time.sleep(_POLL)
    return device


def attached() -> dict[str, str]:
    """Every attached loop device -> its backing file as the kernel shows it.

    A file deleted while attached shows as "PATH (deleted)".
    """
    found: dict[str, str] = {}
    for path in glob.glob(f"{_SYS}/loop*/loop/backing_file"):
        name = path.split("/")[3]
        if not re.fullmatch(r"loop\d+", name):
            continue
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                found[f"/dev/{name}"] = f.read().rstrip("\n")
        except OSError:  # detached between the glob and the read
            continue
    return dict(sorted(found.items(), key=lambda item: int(item[0][len("/dev/loop") :])))


def devices_of(image: str) -> list[str]:
    """The loop devices whose backing file is `image` (a deleted file is no longer it)."""
    target = os.path.realpath(image)
    return [device for device, backing in attached().items() if backing == target]


def detach(device: str, *, timeout: float = 5.0) -> None:
    """Detach `device`; one already detached, or gone, is fine.

    A mounted device is refused (the kernel would only mark it to detach on
    last close, and the later unmount would detach it behind our back).
    """
    name = _name(device)
    if not _is_attached(name):
        return
    where = mountpoint_of(device)
    if where is not None:
        raise Conflict(f"{device} is mounted on {where}: unmount it before detaching the loop device")
    try:
        command.run(["losetup", "--detach", device], subject=device, todo="check what holds it open (`fuser -v DEVICE`)")
    except Unavailable:
        if _is_attached(name):
            raise
        return  # someone else detached it meanwhile
    # Another opener (a udev probe, a backup reading it) defers the detach to its last close.
    deadline = time.monotonic() + timeout
    while _is_attached(name):
        if time.monotonic() > deadline:
            raise Conflict(
                f"{device} is still held open by another process after losetup --detach; "
                f"it detaches by itself when that process closes it (`fuser -v {device}` shows which)"
            )
        time.sleep(_POLL)


def refresh_capacity(device: str, *, timeout: float = 10.0) -> None:
    """The backing file grew: make the loop device as large, and wait until it is."""
    name = _name(device)
    backing = _backing_file(name)
    if backing is None:
        raise NotFound(f"{device} is not an attached loop device: attach the image again")
    command.run(["losetup", "--set-capacity", device], subject=device, todo="check the host's kernel log (dmesg)")
    try:
        want = os.stat(backing).st_size // 512 * 512
    except OSError:  # deleted, or outside this mount namespace: nothing to wait for
        return
    deadline = time.monotonic() + timeout
    while _size(device) != want:
        if time.monotonic() > deadline:
            raise Unavailable(
                f"{device} did not grow to {want} bytes within {timeout:g} s after losetup --set-capacity: check dmesg"
            )
        time.sleep(_POLL)


def _name(device: str) -> str:
    name = os.path.basename(device)
    if not re.fullmatch(r"loop\d+", name):
        raise InvalidInput(f"{device} is not a loop device (expected /dev/loopN)")
    return name


def _backing_file(name: str) -> str | None:
    try:
        with open(f"{_SYS}/{name}/loop/backing_file", encoding="utf-8", errors="surrogateescape") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def _is_attached(name: str) -> bool:
    return os.path.exists(f"{_SYS}/{name}/loop/backing_file")


def _size(device: str) -> int:
    """Bytes, from sysfs (512-byte sectors), 0 while the device is not there."""
    try:
        with open(f"{_SYS}/{os.path.basename(device)}/size") as f:
            return int(f.read()) * 512
    except (OSError, ValueError):
        return 0
