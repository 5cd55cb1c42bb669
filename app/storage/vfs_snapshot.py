"""Snapshots of VFS volumes: a reflink copy where the file system can, a copy elsewhere.

`snapshot_directory(volume_dir, snapshot_dir)` copies the tree with FICLONE
(instant on XFS with reflink=1 and on btrfs: extents are shared and copied
on write later) and falls back to a byte copy per file when the file system
refuses. Modes, owners, mtimes, symlinks and hard links are kept, so an
unchanged file has the same metadata in every snapshot (which is what lets
an incremental backup skip it). Returns "reflink" or "copy" (or "empty").
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat

from app.backup import xattrs
from app.errors import Conflict, NotFound

FICLONE = 0x40049409


def _clone_or_copy(src: str, dst: str, st: os.stat_result, state: dict) -> None:
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            if state["reflink"] is not False:
                try:
                    fcntl.ioctl(dfd, FICLONE, sfd)
                    state["reflink"] = True
                    return
                except OSError as e:
                    if e.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM):
                        raise
                    state["reflink"] = False
            state["copied"] = True
            _copy_sparse(sfd, dfd, st.st_size)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def _copy_sparse(sfd: int, dfd: int, size: int) -> None:
    from app.backup.sparse import data_ranges

    os.ftruncate(dfd, size)
    for start, end in data_ranges(sfd, size):
        pos = start
        while pos < end:
            try:  # in-kernel copy; some kernels refuse it across file systems
                n = os.copy_file_range(sfd, dfd, end - pos, pos, pos)
            except OSError:
                chunk = os.pread(sfd, min(end - pos, 1 << 20), pos)
                n = os.pwrite(dfd, chunk, pos) if chunk else 0
            if n == 0:
                break
            pos += n


def supports_reflink(directory: str) -> bool:
    """Whether files in `directory` can be cloned: a probe with two small files."""
    probe = os.path.join(directory, f".reflink-probe-{os.getpid()}")
    clone = probe + ".clone"
    try:
        with open(probe, "wb") as src_file:
            src_file.write(b"x" * 4096)
        with open(probe, "rb") as src_file, open(clone, "wb") as dst_file:
            fcntl.ioctl(dst_file.fileno(), FICLONE, src_file.fileno())
        return True
    except OSError:
        return False
    finally:
        for path in (probe, clone):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _copy_meta(path: str, st: os.stat_result, is_link: bool = False, src: str | None = None) -> None:
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if src is not None:
        xattrs.copy(src, path)  # after chown, which drops file capabilities
    if not is_link:
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def snapshot_directory(volume_dir: str, snapshot_dir: str) -> str:
    """Copy `volume_dir` to the new `snapshot_dir`; return "reflink", "copy" or "empty"."""
    if not os.path.isdir(volume_dir):
        raise NotFound(f"volume directory {volume_dir} does not exist")
    if os.path.lexists(snapshot_dir):
        raise Conflict(f"snapshot directory {snapshot_dir} already exists")
    state: dict = {"reflink": None, "copied": False}
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, os.stat_result]] = []
    try:
        os.makedirs(os.path.dirname(snapshot_dir), exist_ok=True)
        for root, dirnames, filenames in os.walk(volume_dir):
            rel = os.path.relpath(root, volume_dir)
            dst_root = snapshot_dir if rel == "." else os.path.join(snapshot_dir, rel)
            os.mkdir(dst_root, 0o700)
            dirs.append((dst_root, root, os.lstat(root)))
            for name in dirnames[:]:
                src = os.path.join(root, name)
                if os.path.islink(src):  # os.walk lists symlinks to dirs as dirs
                    dirnames.remove(name)
                    filenames.append(name)
            for name in filenames:
                src = os.path.join(root, name)
                dst = os.path.join(dst_root, name)
                st = os.lstat(src)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(src), dst)
                    _copy_meta(dst, st, is_link=True, src=src)
                elif stat.S_ISREG(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if st.st_nlink > 1 and key in links:
                        os.link(links[key], dst)
                        continue
                    links[key] = dst
                    _clone_or_copy(src, dst, st, state)
                    _copy_meta(dst, st, src=src)
                elif stat.S_ISFIFO(st.st_mode):
                    os.mkfifo(dst)
                    _copy_meta(dst, st, src=src)
                elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    os.mknod(dst, st.st_mode, st.st_rdev)
                    _copy_meta(dst, st, src=src)
        for path, src_dir, st in reversed(dirs):
            _copy_meta(path, st, src=src_dir)
    except BaseException:
        shutil.rmtree(snapshot_dir, ignore_errors=True)
        raise
    if state["copied"]:
        return "copy"
    return "reflink" if state["reflink"] else "empty"
