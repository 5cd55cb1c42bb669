"""Copy a directory tree, sharing file data by reflink where the file system can.

On XFS (reflink=1) and btrfs, FICLONE makes a copy of any size in
constant time that shares its extents with the original until one of them
is written: an instant snapshot, and the base of FIEMAP change detection.
Elsewhere (ext4, NFS) files are copied, with holes kept as holes.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

FICLONE = 0x40049409
REFLINK = "reflink"
COPY = "copy"


def _clone_or_copy(src_fd: int, dst_fd: int, size: int, try_reflink: bool) -> bool:
    """Clone `src_fd` into `dst_fd`; True when it was a reflink."""
    if try_reflink:
        try:
            fcntl.ioctl(dst_fd, FICLONE, src_fd)
            return True
        except OSError:
            pass
    offset = 0
    while offset < size:  # copy data ranges only: holes stay holes
        try:
            data = os.lseek(src_fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            break
        hole = os.lseek(src_fd, data, os.SEEK_HOLE)
        _copy_range(src_fd, dst_fd, data, hole)
        offset = hole
    os.ftruncate(dst_fd, size)
    return False


def _copy_range(src_fd: int, dst_fd: int, start: int, end: int) -> None:
    position = start
    while position < end:
        try:  # in-kernel copy; refused across file systems on some kernels
            copied = os.copy_file_range(src_fd, dst_fd, end - position, position, position)
        except OSError:
            chunk = os.pread(src_fd, min(end - position, 1 << 20), position)
            copied = os.pwrite(dst_fd, chunk, position) if chunk else 0
        if copied == 0:
            break
        position += copied


def supports_reflink(directory: Path) -> bool:
    """Whether files in `directory` can be cloned: a probe with two small files."""
    probe = directory / f".reflink-probe-{os.getpid()}"
    clone = directory / f".reflink-probe-{os.getpid()}.clone"
    try:
        probe.write_bytes(b"x" * 4096)
        with open(probe, "rb") as src, open(clone, "wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        return True
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)
        clone.unlink(missing_ok=True)


def _copy_metadata(src_stat: os.stat_result, dst: str) -> None:
    os.lchown(dst, src_stat.st_uid, src_stat.st_gid)
    if not stat.S_ISLNK(src_stat.st_mode):
        os.chmod(dst, stat.S_IMODE(src_stat.st_mode))
    os.utime(dst, ns=(src_stat.st_atime_ns, src_stat.st_mtime_ns), follow_symlinks=False)


def copy_tree(source: Path, target: Path) -> str:
    """Copy `source` into the new directory `target`; return "reflink" or "copy".

    The answer is "reflink" only when every regular file with data was
    cloned; one copied file makes it "copy".
    """
    os.mkdir(target)
    try_reflink = all_cloned = supports_reflink(target)
    directories = []
    for root, dirs, files in os.walk(source):
        relative = os.path.relpath(root, source)
        out_root = target if relative == "." else target / relative
        for name in dirs:
            src = os.path.join(root, name)
            src_stat = os.lstat(src)
            dst = os.path.join(out_root, name)
            if stat.S_ISLNK(src_stat.st_mode):  # os.walk lists symlinks to directories here
                os.symlink(os.readlink(src), dst)
                _copy_metadata(src_stat, dst)
                continue
            os.mkdir(dst)
            directories.append((src_stat, dst))
        for name in files:
            src = os.path.join(root, name)
            dst = os.path.join(out_root, name)
            src_stat = os.lstat(src)
            mode = src_stat.st_mode
            if stat.S_ISREG(mode):
                src_fd = os.open(src, os.O_RDONLY)
                try:
                    dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    try:
                        cloned = _clone_or_copy(src_fd, dst_fd, src_stat.st_size, try_reflink)
                    finally:
                        os.close(dst_fd)
                finally:
                    os.close(src_fd)
                if not cloned and src_stat.st_size:
                    all_cloned = False
                    try_reflink = False  # the file system said no once: don't ask per file
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(src), dst)
            else:  # fifos, sockets, device nodes
                os.mknod(dst, mode, src_stat.st_rdev)
            _copy_metadata(src_stat, dst)
    for src_stat, dst in reversed(directories):  # after their contents, which touch mtimes
        _copy_metadata(src_stat, dst)
    _copy_metadata(os.stat(source), str(target))
    return REFLINK if all_cloned else COPY
