"""Walking `vfs.path` without following links.

`vfs.path` may be an NFS export that other hosts (and containers, through
their volumes) write to. A symbolic link planted there in place of a volume
directory, of `.convoy` or of a snapshot directory would otherwise make this
host's root create, mount, copy or delete whatever the link points at. So
every component below the configured path is opened relative to its parent
with O_NOFOLLOW, and the work is done through the resulting descriptors.
The configured path itself is the administrator's and is trusted.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from app.errors import Conflict

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def planted(path: Path | str) -> Conflict:
    return Conflict(
        f"{path} is a symbolic link or not a directory; convoy never follows links in vfs.path "
        "(another host or a container may have planted it): remove it and try again"
    )


def open_child_dir(parent_fd: int, name: str, where: Path, *, create: bool = False, mode: int = 0o700) -> int:
    """Open directory `name` under `parent_fd` (creating it with `mode` if asked); never a link."""
    if create:
        with suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=parent_fd)
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise planted(where / name) from None
        raise


@contextmanager
def open_dir(base: Path, *parts: str, create: bool = False, mode: int = 0o700) -> Iterator[int]:
    """A descriptor of `base/parts...`, every part opened without following links."""
    if create:
        base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    where = base
    try:
        for part in parts:
            child = open_child_dir(fd, part, where, create=create, mode=mode)
            os.close(fd)
            fd, where = child, where / part
        yield fd
    finally:
        os.close(fd)


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def is_real_dir(dir_fd: int, name: str) -> bool:
    st = lstat_at(dir_fd, name)
    return st is not None and stat.S_ISDIR(st.st_mode)


def remove_at(dir_fd: int, name: str) -> None:
    """Remove `name` under `dir_fd`: a real directory with its tree, anything else (a link, a file) by unlinking it.

    Never what a link points at: the tree is removed by descriptors, and a link is the entry removed.
    """
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def fsync_each(*fds: int) -> None:
    for fd in fds:
        os.fsync(fd)


def write_json_at(
    dir_fd: int,
    name: str,
    data: object,
    fsync_dirs: Callable[..., None] = fsync_each,
    durable_with: tuple[int, ...] = (),
) -> None:
    """Write, fsync, rename inside `dir_fd`: readers see the old or the new file, never half.

    Durable on return, with the descriptors in `durable_with` (the directory a
    new volume was made in). `fsync_dirs(*fds)` syncs the directories: an
    `app.fs.sync.FsyncGroup` shares that flush with concurrent writers. The
    file's own fsync is not shared: concurrent writers' fsyncs of their files
    run in parallel, and the file system merges their journal commits.
    """
    tmp = f".{name}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    fsync_dirs(dir_fd, *durable_with)


def read_capped_at(dir_fd: int, name: str, max_bytes: int) -> bytes:
    """Up to `max_bytes + 1` bytes of regular file `name` (one more than allowed shows it is too big)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def proc_path(fd: int) -> str:
    """A path the kernel resolves to what `fd` refers to, whatever its name is now."""
    return f"/proc/self/fd/{fd}"
