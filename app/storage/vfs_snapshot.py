"""Snapshots of VFS volumes: a reflink copy where the file system can, a copy elsewhere.

`snapshot_tree(source_fd, dest_parent_fd, name)` (or `snapshot_directory` by paths) copies the tree with FICLONE
(instant on XFS with reflink=1 and on btrfs: extents are shared and copied
on write later) and falls back to a byte copy per file when the file system
refuses. Modes, owners, mtimes, symlinks and hard links are kept, so an
unchanged file has the same metadata in every snapshot (which is what lets
an incremental backup skip it). Returns "reflink" or "copy" (or "empty").

The volume is writable by its containers while it is copied, so the walk
goes by directory descriptors, never by path names: a directory swapped
for a link mid-copy cannot redirect it to the host's files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator

from app.errors import Conflict
from app.fs import xattrs
from app.fs.clone import copy_sparse, try_clone
from app.storage.nofollow import proc_path

# directory levels below the volume's root a snapshot copies: the walk holds two
# descriptors per level, so an unbounded depth would exhaust RLIMIT_NOFILE
MAX_DEPTH = 256


def _clone_or_copy(sfd: int, dfd: int, st: os.stat_result, state: dict[str, bool | None]) -> None:
    """A reflink until the file system first refuses one; byte copies from then on."""
    if state["reflink"] is not False:
        state["reflink"] = try_clone(sfd, dfd)
        if state["reflink"]:
            return
    state["copied"] = True
    copy_sparse(sfd, dfd, st.st_size)


class _Tree:
    """One snapshot copy under way: the walk's state and where errors point."""

    def __init__(self, where: str, dest_root: int):
        self.where = where
        self.dest_root = dest_root
        self.state: dict[str, bool | None] = {"reflink": None, "copied": False}
        self.links: dict[tuple[int, int], str] = {}  # (dev, ino) -> first copy, relative to dest_root

    def changed(self, rel: str) -> Conflict:
        return Conflict(f"{os.path.join(self.where, rel)} changed type while the snapshot was taken; take the snapshot again")

    def too_deep(self, rel: str) -> Conflict:
        return Conflict(
            f"{os.path.join(self.where, rel)} is more than {MAX_DEPTH} directories deep below {self.where}; "
            f"a snapshot copies at most {MAX_DEPTH} levels: move that tree nearer the volume's root "
            "and take the snapshot again"
        )


class _Vanished(Exception):
    """An entry removed between listing and copying: the snapshot simply does not have it."""


def _open_same(parent_fd: int, name: str, seen: os.stat_result, flags: int, tree: _Tree, rel: str) -> int:
    """Open `name` under `parent_fd` as the very object `seen` described, or raise "changed type"."""
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise _Vanished(rel) from None
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise tree.changed(rel) from None
        raise
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) or stat.S_IFMT(st.st_mode) != stat.S_IFMT(seen.st_mode):
        os.close(fd)
        raise tree.changed(rel)
    return fd


def _copy_meta_fd(fd: int, st: os.stat_result, src_fd: int) -> None:
    os.fchown(fd, st.st_uid, st.st_gid)
    xattrs.copy(src_fd, fd)  # after chown, which drops file capabilities
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _read_xattrs_at(src_dir: int, name: str, rel: str) -> dict[str, str] | None:
    """Extended attributes of a link or special file, which cannot be opened: by name in its pinned directory."""
    try:
        # through the pinned directory's /proc name, the last component not followed
        return xattrs.read(os.path.join(proc_path(src_dir), name))
    except FileNotFoundError:
        raise _Vanished(rel) from None


def _copy_meta_at(dst_dir: int, name: str, st: os.stat_result, values: dict[str, str] | None, is_link: bool) -> None:
    """Metadata of the copy of a link or special file, by name in its (pinned) directory."""
    os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_dir, follow_symlinks=False)
    xattrs.write(os.path.join(proc_path(dst_dir), name), values)  # after chown, as for files
    if not is_link:
        os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dst_dir)
    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_dir, follow_symlinks=False)


def _copy_file(src_dir: int, dst_dir: int, name: str, seen: os.stat_result, tree: _Tree, rel: str) -> None:
    key = (seen.st_dev, seen.st_ino)
    if seen.st_nlink > 1 and key in tree.links:
        os.link(tree.links[key], name, src_dir_fd=tree.dest_root, dst_dir_fd=dst_dir, follow_symlinks=False)
        return
    # O_PATH first: opening for reading a device or FIFO swapped in could block or act
    path_fd = _open_same(src_dir, name, seen, os.O_PATH, tree, rel)
    try:
        sfd = os.open(proc_path(path_fd), os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(path_fd)
    try:
        st = os.fstat(sfd)
        dfd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst_dir)
        try:
            _clone_or_copy(sfd, dfd, st, tree.state)
            _copy_meta_fd(dfd, st, sfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    tree.links[key] = rel


def _copy_entry(src_dir: int, dst_dir: int, name: str, st: os.stat_result, tree: _Tree, rel: str) -> None:
    """Copy one non-directory entry."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        _copy_file(src_dir, dst_dir, name, st, tree, rel)
        return
    if stat.S_ISSOCK(mode):
        return  # nothing to copy, a socket is only meaningful while its server runs
    # read before the copy is made: a source removed meanwhile leaves nothing to undo
    values = _read_xattrs_at(src_dir, name, rel)
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(name, dir_fd=src_dir)
        except OSError as err:
            if err.errno == errno.ENOENT:
                raise _Vanished(rel) from None
            if err.errno == errno.EINVAL:
                raise tree.changed(rel) from None
            raise
        os.symlink(target, name, dir_fd=dst_dir)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(name, 0o600, dir_fd=dst_dir)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=dst_dir)
    else:
        return  # no other file type exists; never guess how to copy one
    _copy_meta_at(dst_dir, name, st, values, is_link=stat.S_ISLNK(mode))


class _Level:
    """One directory of the walk: the source and its copy held open while its entries are copied."""

    def __init__(self, src: int, dst: int, st: os.stat_result, rel: str):
        self.src, self.dst, self.st, self.rel = src, dst, st, rel
        self.entries = _entries(src)

    def close(self) -> None:
        os.close(self.src)
        os.close(self.dst)


def _copy_tree(source_fd: int, tree: _Tree) -> None:
    """Depth first, each directory held open while its entries are copied (no name is resolved twice)."""
    root = _Level(source_fd, tree.dest_root, os.fstat(source_fd), "")  # its fds belong to the caller
    stack = [root]
    try:
        while stack:
            level = stack[-1]
            entry = next(level.entries, None)
            if entry is None:
                _copy_meta_fd(level.dst, level.st, level.src)  # last: copying children changes a directory's mtime
                stack.pop()
                if level is not root:
                    level.close()
                continue
            name, st = entry
            rel = os.path.join(level.rel, name)
            if not stat.S_ISDIR(st.st_mode):
                with contextlib.suppress(_Vanished):  # deleted by a container meanwhile, as it could have been a moment earlier
                    _copy_entry(level.src, level.dst, name, st, tree, rel)
                continue
            if len(stack) > MAX_DEPTH:  # this directory would be level len(stack) below the root
                raise tree.too_deep(rel)
            child = _open_child(level, name, st, tree, rel)
            if child is not None:
                stack.append(child)
    finally:  # a failure anywhere (a Conflict, ENOSPC) closes every level still open
        for level in stack:
            if level is not root:
                level.close()


def _open_child(level: _Level, name: str, st: os.stat_result, tree: _Tree, rel: str) -> _Level | None:
    """Open directory `name` of `level` and make its copy; None if it vanished meanwhile."""
    try:
        child_src = _open_same(level.src, name, st, os.O_RDONLY | os.O_DIRECTORY, tree, rel)
    except _Vanished:
        return None
    try:
        os.mkdir(name, 0o700, dir_fd=level.dst)
        child_dst = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=level.dst)
    except BaseException:
        os.close(child_src)
        raise
    try:
        return _Level(child_src, child_dst, st, rel)
    except BaseException:  # its listing failed
        os.close(child_src)
        os.close(child_dst)
        raise


def _entries(dir_fd: int) -> Iterator[tuple[str, os.stat_result]]:
    """(name, lstat) of each entry of an open directory, read at once (bounded fds: one per level)."""
    listed = []
    with os.scandir(dir_fd) as scan:
        for entry in scan:
            with contextlib.suppress(FileNotFoundError):  # removed while listed
                listed.append((entry.name, entry.stat(follow_symlinks=False)))
    return iter(sorted(listed))


def snapshot_tree(source_fd: int, dest_parent_fd: int, dest_name: str, where: str) -> str:
    """Copy the open directory `source_fd` to the new `dest_name` under `dest_parent_fd`.

    Returns "reflink", "copy" or "empty". Nothing is looked up by a path
    from the volume's root: a container that swaps a directory for a link
    mid-copy gets a Conflict, never a copy of the host's files. `where`
    names the volume directory in errors.
    """
    os.mkdir(dest_name, 0o700, dir_fd=dest_parent_fd)
    try:
        dest_root = os.open(dest_name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dest_parent_fd)
        tree = _Tree(where, dest_root)
        try:
            _copy_tree(source_fd, tree)
        finally:
            os.close(dest_root)
    except BaseException:
        shutil.rmtree(dest_name, dir_fd=dest_parent_fd, ignore_errors=True)
        raise
    if tree.state["copied"]:
        return "copy"
    return "reflink" if tree.state["reflink"] else "empty"


def snapshot_directory(volume_dir: str, snapshot_dir: str) -> str:
    """`snapshot_tree` by paths: neither the volume directory nor the new snapshot's name may be a link."""
    source = os.open(volume_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.makedirs(os.path.dirname(snapshot_dir) or ".", exist_ok=True)
        parent = os.open(os.path.dirname(snapshot_dir) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return snapshot_tree(source, parent, os.path.basename(snapshot_dir), where=volume_dir)
        finally:
            os.close(parent)
    finally:
        os.close(source)
