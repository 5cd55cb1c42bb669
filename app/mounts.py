"""Mount syscalls and the kernel's view of what is mounted.

mount(2) and umount2(2) through ctypes: a volume's life makes a few mounts,
and a fork of mount(8) for each would cost more than the rest of the request.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from app.errors import Conflict, Unavailable

MS_BIND = 4096
MS_REC = 16384
MNT_DETACH = 2

PathArg = str | os.PathLike[str]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _b(value: PathArg | None) -> bytes | None:
    return None if value is None else os.fsencode(str(value))


def mount(source: PathArg, target: PathArg, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        err = ctypes.get_errno()
        what = f"mount {source} on {target}"
        if err == errno.EPERM:
            raise Unavailable(f"{what}: permission denied; the daemon must run as root with CAP_SYS_ADMIN")
        raise Unavailable(f"{what}: {os.strerror(err)}")


def bind_mount(source: PathArg, target: PathArg) -> None:
    mount(source, target, None, MS_BIND | MS_REC)


def unmount(target: PathArg) -> None:
    """Unmount `target`; already unmounted is fine, busy is a clear error."""
    if _libc.umount2(_b(target), 0) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more)
        return
    if err == errno.EBUSY:
        raise Conflict(f"{target} is busy: a process still uses files on it; stop it and try again")
    raise Unavailable(f"unmount {target}: {os.strerror(err)}")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _mount_table() -> Iterator[tuple[str, str]]:
    """(mount point, file system type) of every mount this mount namespace sees."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as info:
        for line in info:
            left, _, right = line.partition(" - ")
            fields = left.split(" ")
            if len(fields) > 4:
                yield _unescape(fields[4]), right.split(" ")[0]


def mounted_paths() -> set[str]:
    """Every mount point this process's mount namespace sees."""
    return {point for point, _ in _mount_table()}


def is_mounted(path: Path, mounted: set[str] | None = None) -> bool:
    return str(path) in (mounted if mounted is not None else mounted_paths())


def same_directory(a: Path, b: Path) -> bool:
    """Whether two paths show the same directory (a bind mount shows its source's inode)."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def filesystem_type(path: Path) -> str:
    """The file system type of the mount that holds `path` (longest matching mount point)."""
    target = os.path.realpath(path)
    best, best_type = "", ""
    for point, fstype in _mount_table():
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fstype
    return best_type
