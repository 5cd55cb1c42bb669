"""The file system on a block device: probe, make, mount, grow, check, freeze.

Only the caller decides when to format: `probe` tells blank (None) from one
of ours, and refuses anything else (a partition table, LVM, swap, another
file system) with Conflict, so a caller that probes first never formats over
data.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import stat
from collections.abc import Iterator

from app import mounts
from app.errors import Conflict, Damaged, InvalidInput, NotFound, Unavailable
from app.fs import command

log = logging.getLogger(__name__)

SUPPORTED = ("ext4", "xfs")

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
CAP_SYS_RESOURCE = 24
FIFREEZE, FITHAW = 0xC0045877, 0xC0045878  # _IOWR('X', 119, int), _IOWR('X', 120, int)

# Mount data for a container volume: a snapshot image is a reflink copy with
# the same XFS UUID, and both may be mounted at once.
_RW_DATA = {"ext4": None, "xfs": "nouuid"}
# Reading an untrusted image: nothing may be written to it, not even a journal replay.
_RO_DATA = {"ext4": "noload", "xfs": "norecovery,nouuid"}

_MKFS = {"ext4": ["mkfs.ext4", "-q", "-F"], "xfs": ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"]}

# Progress and banner lines of the checkers; the first other line is the finding.
_CHECK_NOISE = re.compile(
    r"^(Pass \d|e2fsck \d|Warning: skipping journal recovery|Phase \d|- |No modify flag set"
    r"|Inode table for group|\S+: \d+/\d+ files)"
)

_unfreezable: set[str] = set()  # mount points already logged as not freezable


def check_name(fs: str) -> str:
    """`fs` as one of SUPPORTED, or InvalidInput naming the valid values."""
    name = fs.strip().lower()
    if name not in SUPPORTED:
        raise InvalidInput(f"unknown file system {fs!r}: use one of {', '.join(SUPPORTED)} (-o fs=NAME)")
    return name


def probe(device: str) -> str | None:
    """The file system on `device`, None when it holds no signature at all.

    Low-level probe of the device itself (no blkid cache). Anything that is
    not one of SUPPORTED raises Conflict naming what was found.
    """
    _require_exists(device)
    result = command.run(
        ["blkid", "--probe", "--output", "export", device],
        subject=device,
        todo="check that the device exists and is readable",
        ok=(0, 2, 8),
    )
    if result.returncode == 2:  # no signature of any kind
        return None
    if result.returncode == 8:  # more than one signature
        raise Conflict(
            f"{device} holds several signatures ({command.first_line(result.stderr)}): "
            "refusing to format or mount it; see `wipefs DEVICE` and wipe it only if its data is not needed"
        )
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    fs = found.get("TYPE")
    if fs in SUPPORTED:
        return fs
    what = f"a signature of type {fs}" if fs else f"a {found.get('PTTYPE', 'unknown')} partition table"
    raise Conflict(
        f"{device} holds {what}, not one of {', '.join(SUPPORTED)}: refusing to format over it; "
        "wipe it (`wipefs -a DEVICE`) only if its data is not needed"
    )


def make(device: str, fs: str) -> None:
    """Make file system `fs` on `device`, over whatever it holds: probe first."""
    argv = [*_MKFS[check_name(fs)], device]
    command.run(
        argv,
        subject=device,
        timeout=600,
        todo="check the device's size (xfs needs more than 300 MB) and the host's kernel log (dmesg)",
    )


def mount(device: str, target: str, fs: str, *, read_only: bool = False) -> None:
    """Mount `device` on `target`: read-write for a container volume, or
    read-only for reading an untrusted image (nothing written to it, no
    device nodes, set-uid files or executables honoured)."""
    fs = check_name(fs)
    if not os.path.isdir(target):
        raise NotFound(f"mount point {target} for {device} does not exist or is not a directory: create it first")
    flags = MS_RDONLY | MS_NODEV | MS_NOSUID | MS_NOEXEC if read_only else 0
    data = _RO_DATA[fs] if read_only else _RW_DATA[fs]
    try:
        mounts.mount(device, target, fs, flags, data)
    except Unavailable as e:
        if "permission denied" in e.message:
            raise
        raise Unavailable(
            f"{e.message}; the {fs} file system on {device} may be damaged, or not {fs}: see the kernel log (dmesg)"
        ) from None


def grow(device: str, mountpoint: str, fs: str) -> None:
    """Grow the file system mounted from `device` on `mountpoint` to the device's size, online."""
    todo = "check that it is mounted and see the kernel log (dmesg)"
    if check_name(fs) == "xfs":
        command.run(["xfs_growfs", "-d", mountpoint], subject=f"{mountpoint} ({device})", timeout=600, todo=todo)
        return
    result = command.run(["resize2fs", device], subject=device, timeout=600, todo=todo, ok=(0, 1))
    if result.returncode != 0:
        said = command.first_line(result.stderr) or command.first_line(result.stdout)
        if "Permission denied" in said:  # the kernel's EPERM for online growing: CAP_SYS_RESOURCE
            todo = (
                "growing a mounted ext4 needs the CAP_SYS_RESOURCE capability, which this daemon lacks: "
                "it grows when unmounted (at the volume's next mount)"
            )
        raise Unavailable(f"resize2fs on {device} failed: {said}; {todo}")


def can_grow_mounted_ext4() -> bool:
    """Whether this process may grow a mounted ext4: the kernel wants CAP_SYS_RESOURCE for it.

    Hosts (and Docker's plugin sandboxes) that drop that capability can only
    grow an ext4 while it is unmounted (`grow_unmounted`); xfs needs none."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def grow_unmounted(device: str, fs: str) -> None:
    """Grow the unmounted ext4 on `device` to the device's size (resize2fs wants a clean check first)."""
    if check_name(fs) != "ext4":
        raise InvalidInput(f"only ext4 grows unmounted; mount the {fs} on {device} and grow it online")
    todo = "run `e2fsck -f` on it by hand and see what it reports"
    command.run(["e2fsck", "-f", "-p", device], subject=device, timeout=1800, todo=todo, ok=(0, 1))
    command.run(["resize2fs", device], subject=device, timeout=1800, todo=todo)


def filesystem_size(device: str, fs: str) -> int:
    """The size in bytes the file system on `device` spans, as its superblock says (it may be
    smaller than the device, which then grew)."""
    if check_name(fs) == "ext4":
        out = command.run(["dumpe2fs", "-h", device], subject=device, todo="see the kernel log (dmesg)").stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return int(fields["Block count"].strip()) * int(fields["Block size"].strip())
    out = command.run(
        ["xfs_db", "-r", "-c", "sb 0", "-c", "print dblocks blocksize", device],
        subject=device,
        todo="see the kernel log (dmesg)",
    ).stdout
    values = dict(line.replace(" ", "").split("=", 1) for line in out.splitlines() if "=" in line)
    return int(values["dblocks"]) * int(values["blocksize"])


def check(device: str, fs: str, *, timeout: float = 1800.0) -> None:
    """Read-only consistency check of an unmounted file system.

    Run before mounting an image restored from a store we do not trust; a
    damaged file system raises (see `_damaged`), nothing is ever repaired.
    """
    fs = check_name(fs)
    _require_exists(device)
    where = mountpoint_of(device)
    if where is not None:
        raise Conflict(f"{device} is mounted on {where}: a consistency check needs it unmounted")
    todo = "check that the device is readable and see the kernel log (dmesg)"
    if fs == "ext4":
        # 0: clean; bit 4: errors left uncorrected (-n corrects nothing); bit 8: e2fsck gave up,
        # which on a device that exists and is not mounted means an unreadable superblock.
        # 16 and up: a usage error or e2fsck itself was cancelled.
        result = command.run(["e2fsck", "-f", "-n", device], subject=device, timeout=timeout, todo=todo, ok=tuple(range(16)))
    else:
        # 0: clean; 1: corruption found (the device was checked to exist above)
        result = command.run(["xfs_repair", "-n", device], subject=device, timeout=timeout, todo=todo, ok=(0, 1))
    if result.returncode != 0:
        _damaged(device, fs, _finding(result.stdout + "\n" + result.stderr))


def _damaged(device: str, fs: str, finding: str) -> None:
    """The one place that says a file system is damaged."""
    raise Damaged(
        f"the {fs} file system on {device} is damaged ({finding}): it was not mounted; "
        "restore it from another backup, or repair a copy with " + ("e2fsck -f" if fs == "ext4" else "xfs_repair")
    )


def _finding(output: str) -> str:
    return command.first_line(output, skip=_CHECK_NOISE) or "no details given"


@contextlib.contextmanager
def frozen(mountpoint: str) -> Iterator[None]:
    """Hold the file system on `mountpoint` frozen (consistent on disk) for the block.

    Writers block until it is thawed, which happens even when the block
    raises. A file system that cannot be frozen is used as is (logged once).
    """
    try:
        fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise NotFound(f"{mountpoint} cannot be frozen: {e.strerror}; is the volume mounted?") from None
    try:
        if not _freeze(fd, mountpoint):
            yield
            return
        try:
            yield
        finally:
            try:
                fcntl.ioctl(fd, FITHAW, 0)
            except OSError as e:
                raise Unavailable(
                    f"thawing {mountpoint} failed: {e.strerror}; writers to it stay blocked: run `fsfreeze -u {mountpoint}`"
                ) from None
    finally:
        os.close(fd)


def _freeze(fd: int, mountpoint: str) -> bool:
    """Freeze; False when this file system cannot be frozen at all."""
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
        return True
    except OSError as e:
        err, reason = e.errno, e.strerror
    if err in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL):
        if mountpoint not in _unfreezable:
            _unfreezable.add(mountpoint)
            log.info("%s cannot be frozen (%s): its snapshots are only crash-consistent", mountpoint, reason)
        return False
    if err == errno.EBUSY:
        raise Conflict(f"{mountpoint} is already frozen (another snapshot running?): try again when it is thawed")
    if err == errno.EPERM:
        raise Unavailable(f"freezing {mountpoint}: permission denied; the daemon must run as root with CAP_SYS_ADMIN")
    raise Unavailable(f"freezing {mountpoint} failed: {reason}; see the kernel log (dmesg)")


def mountpoint_of(device: str) -> str | None:
    """Where block device `device` is mounted (the first mount if several), or None."""
    try:
        st = os.stat(device)
    except FileNotFoundError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    key = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    first = None
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
        for line in info:
            fields = line.split(" ")
            if len(fields) > 4 and fields[2] == key:
                point = _unescape(fields[4])
                if fields[3] == "/":  # the device's root, not a bind mount of a subdirectory
                    return point
                first = first or point
    return first


def size_of(device: str) -> int:
    """Size in bytes of a block device (or regular file)."""
    _require_exists(device)
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def _require_exists(device: str) -> None:
    # blkid answers "nothing found" for a missing device: never let that read as blank
    if not os.path.exists(device):
        raise NotFound(f"{device} does not exist: attach the volume's device again")


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)
