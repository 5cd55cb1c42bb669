"""The directory a restore writes into: nothing a backup says reaches outside it.

A store is untrusted input. Both restore paths (our manifests and Convoy
0.5.2 archives) describe a tree as a list of entries, and every entry is
checked on its name before anything is created for it (`TreeRules`):

- a path is relative and '/'-separated with no '', '.' or '..' component
  ("." alone is the target itself, and only as a directory);
- its parent is a directory this restore created earlier: never a symlink
  the backup made, a file, or something listed later;
- no path is listed twice, so nothing is ever created over a symlink or a
  directory, and nothing is ever written through one;
- a hard link points at a regular file this restore created earlier.

Then each object is created relative to a descriptor of its parent
directory, reached from the target one component at a time with
O_NOFOLLOW (`RestoreTarget`): even a tree changed under the restore cannot
redirect a write. OS errors become errors that name the entry.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Self

from app.errors import Conflict, ConvoyError, Damaged, InvalidInput, Unavailable
from app.fs import xattrs
from app.fs.sync import sync_filesystem

from . import schemas
from .fallocate import allocate

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SPECIAL = {"fifo": stat.S_IFIFO, "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK}
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _allocate_blocks(fd: int, blocks: Iterable[schemas.Block]) -> None:
    """Allocate the ranges a block map (offset, length, digest) fills, each contiguous run at once.
    Holes stay holes."""
    start = end = -1
    for offset, length, _digest in blocks:
        if offset != end:
            if end > start:
                allocate(fd, start, end - start)
            start = offset
        end = offset + length
    if end > start:
        allocate(fd, start, end - start)


def prepare_target(target: str) -> None:
    """The restore target must be an empty (or not yet existing) directory."""
    if os.path.lexists(target):
        if not os.path.isdir(target) or os.path.islink(target):
            raise InvalidInput(f"restore target {target} is not a directory")
        if os.listdir(target):
            raise Conflict(f"restore target {target} is not empty; restore into a new volume")
    else:
        os.makedirs(target, mode=0o700)


def make_durable(target: str) -> None:
    """Flush the restored tree (data, metadata, directory entries) to disk.

    A restore returns only once a power loss can no longer take back what it
    wrote: the daemon marks the volume usable right after. One syncfs of the
    target's file system covers every file and directory at once.
    """
    try:
        sync_filesystem(target)
    except OSError as e:
        raise Unavailable(f"cannot flush the restored data in {target} to disk: {e.strerror}") from e


def _unsafe(path: str) -> str | None:
    """Why `path` may not name something inside the target, or None."""
    if "\0" in path:
        return "a name with a NUL byte"
    if path.startswith("/"):
        return "an absolute path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "a path with an empty, '.' or '..' component"
    return None



# -- image files (a whole volume in one file or block device) ------------------------------

_TOO_BIG = (errno.EFBIG, errno.EINVAL)  # past the file system's largest file, or past off_t


def size_image(fd: int, size: int, image: str, what: str) -> None:
    """Give a new image file its full size (a hole until written)."""
    try:
        os.ftruncate(fd, size)
    except OSError as e:
        raise _image_error(e, image, f"{what} is an image of {size} bytes, more than the file system of {image} allows") from None


def allocate_image(fd: int, blocks: Iterable[schemas.Block], image: str) -> None:
    """Allocate the ranges of a new image file that `blocks` will fill (see RestoreTarget.allocate)."""
    try:
        _allocate_blocks(fd, blocks)
    except OSError as e:
        raise _image_error(e, image, f"the image's blocks do not fit in {image}") from None


def write_image_at(fd: int, data: bytes | memoryview, offset: int, image: str, what: str) -> None:
    """Write all of `data` at `offset` of an image (pwrite may write less than asked)."""
    view = memoryview(data)
    try:
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    except OSError as e:
        raise _image_error(e, image, f"{what} has data at offset {offset}, beyond what {image} can hold") from None


def _image_error(e: OSError, image: str, too_big: str) -> ConvoyError:
    if e.errno in _FULL:
        return Unavailable(f"the restore target {image} is full: free space or give the volume more room")
    if e.errno in _TOO_BIG:
        return Conflict(f"{too_big}: restore onto a bigger target, or the backup is damaged")
    return Conflict(f"cannot write the restore target {image}: {e.strerror}")


class TreeRules:
    """What a backup's list of entries may say, checked on names alone."""

    def __init__(self, what: str):
        self.what = what  # "backup B of volume V", for messages
        self._dirs = {"."}
        self._files: set[str] = set()
        self._seen: set[str] = set()

    def refuse(self, path: str, why: str) -> Damaged:
        """A backup whose entries could reach outside the target: no Convoy writes one."""
        return Damaged(f"{self.what} holds {path!r}, {why}; refusing to restore it (nothing outside the target was touched)")

    def check(self, path: str, kind: str, link: str | None = None) -> None:
        """Raise Damaged naming `path` when the entry could reach outside the target."""
        if path != ".":
            why = _unsafe(path)
            if why:
                raise self.refuse(path, why)
        elif kind != "dir":
            raise self.refuse(path, f"the target itself as a {kind}")
        if path in self._seen:
            raise self.refuse(path, "listed a second time (over what the backup made first)")
        parent = path.rpartition("/")[0] or "."
        if path != "." and parent not in self._dirs:
            raise self.refuse(path, f"whose parent {parent!r} is not a directory restored before it")
        if kind == "hardlink" and link not in self._files:
            raise self.refuse(path, f"a hard link to {link!r}, which is not a regular file restored before it")
        self._seen.add(path)
        if kind == "dir":
            self._dirs.add(path)
        elif kind == "file":
            self._files.add(path)


class RestoreTarget:
    """Creates a backup's entries under one directory (see the module doc).

    Use as a context manager; it holds a descriptor of the target and of the
    last parent directory used (entries come grouped by directory).
    """

    def __init__(self, path: str, what: str):
        prepare_target(path)
        self.path = path
        self.what = what
        self.rules = TreeRules(what)
        self._root = os.open(path, _DIR_FLAGS)
        self._cached: tuple[str, int] = ("", -1)  # (relative directory, its descriptor)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._drop_cache()
        if self._root >= 0:
            os.close(self._root)
            self._root = -1

    # -- errors ----------------------------------------------------------------

    def error(self, path: str, e: OSError) -> ConvoyError:
        if e.errno in _FULL:
            return Unavailable(
                f"the restore target {self.path} is full (while restoring {path!r}): free space or give the volume more room"
            )
        return Conflict(f"cannot restore {path!r} of {self.what} into {self.path}: {e.strerror}")

    @contextmanager
    def failures(self, path: str) -> Iterator[None]:
        """Turn an OS error while restoring `path` into one that names it."""
        try:
            yield
        except OSError as e:
            raise self.error(path, e) from None

    # -- directories, never through a symlink ---------------------------------------------

    def _drop_cache(self) -> None:
        if self._cached[1] >= 0:
            os.close(self._cached[1])
        self._cached = ("", -1)

    def _walk(self, start: int, parts: list[str]) -> int:
        """Open the directory `parts` below `start`, refusing symlinks on the way; a new descriptor."""
        fd = start
        try:
            for part in parts:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                if fd != start:
                    os.close(fd)
                fd = child
        except BaseException:
            if fd != start:
                os.close(fd)
            raise
        return fd

    def _dir(self, rel: str) -> int:
        """A descriptor of directory `rel` of the target (borrowed: valid until the next call)."""
        if rel == ".":
            return self._root
        cached_rel, cached_fd = self._cached
        if rel == cached_rel:
            return cached_fd
        if cached_fd >= 0 and rel.startswith(cached_rel + "/"):
            fd = self._walk(cached_fd, rel[len(cached_rel) + 1 :].split("/"))
        else:
            fd = self._walk(self._root, rel.split("/"))
        self._drop_cache()
        self._cached = (rel, fd)
        return fd

    def _parent(self, path: str) -> tuple[int, str]:
        head, _, name = path.rpartition("/")
        return self._dir(head or "."), name

    # -- creating entries ---------------------------------------------------------------

    def mkdir(self, path: str) -> None:
        self.rules.check(path, "dir")
        if path != ".":
            with self.failures(path):
                parent, name = self._parent(path)
                os.mkdir(name, 0o700, dir_fd=parent)

    def create_file(self, path: str, size: int) -> int:
        """A new regular file of `size` bytes (a hole until written); its write descriptor."""
        self.rules.check(path, "file")
        with self.failures(path):
            parent, name = self._parent(path)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        try:
            os.ftruncate(fd, size)
        except OSError as e:
            os.close(fd)  # or the restore mount stays busy
            if e.errno in (errno.EFBIG, errno.EINVAL):
                raise Conflict(
                    f"{self.what} holds file {path!r} of {size} bytes, more than the file system "
                    f"of {self.path} allows; restore it onto a file system that takes files this big"
                ) from None
            raise self.error(path, e) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def allocate(self, fd: int, path: str, blocks: Iterable[schemas.Block]) -> None:
        """Allocate the ranges file `path` has data in (its block map), merged into
        runs, before the workers write them: on XFS a direct write into a hole
        allocates its own extent, four writers interleave theirs, and the restore
        ran ~8% slower. A full target fails here, before any data moves."""
        with self.failures(path):
            _allocate_blocks(fd, blocks)

    def open_direct(self, path: str) -> int:
        """A second write descriptor of file `path` with O_DIRECT, or -1 where unsupported."""
        with self.failures(path):
            parent, name = self._parent(path)
            try:
                return os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_DIRECT, dir_fd=parent)
            except OSError as e:
                if e.errno == errno.EINVAL:
                    return -1
                raise

    def symlink(self, path: str, link: str) -> None:
        """A symlink is data: created as stored, never followed by the restore."""
        self.rules.check(path, "symlink")
        if not link or "\0" in link:
            raise self.rules.refuse(path, "a symlink with an empty target or a NUL byte")
        with self.failures(path):
            parent, name = self._parent(path)
            os.symlink(link, name, dir_fd=parent)

    def hardlink(self, path: str, link: str) -> None:
        self.rules.check(path, "hardlink", link)
        with self.failures(path):
            head, _, source_name = link.rpartition("/")
            source = self._walk(self._root, head.split("/")) if head else self._root
            try:
                parent, name = self._parent(path)
                os.link(source_name, name, src_dir_fd=source, dst_dir_fd=parent, follow_symlinks=False)
            finally:
                if source != self._root:
                    os.close(source)

    def special(self, path: str, kind: str, rdev: int = 0) -> None:
        """A fifo or device node, owner-only until its metadata is applied."""
        self.rules.check(path, kind)
        with self.failures(path):
            parent, name = self._parent(path)
            os.mknod(name, 0o600 | _SPECIAL[kind], rdev, dir_fd=parent)

    # -- metadata -------------------------------------------------------------------------

    def finish_dirs(self, dirs: Sequence[schemas.DirEntry]) -> None:
        """Directories' metadata, after everything inside them exists, deepest first:
        restoring a child never changes a parent's mtime again."""
        for entry in sorted(dirs, key=lambda e: e["path"].count("/") + (e["path"] != "."), reverse=True):
            self.set_metadata(
                entry["path"], "dir", entry["mode"], entry["uid"], entry["gid"], entry["mtime_ns"], entry.get("xattrs")
            )

    def set_metadata(
        self, path: str, kind: str, mode: int, uid: int, gid: int, mtime_ns: int, xattr_values: dict[str, str] | None = None
    ) -> None:
        """Owner, extended attributes, mode and mtime of an entry created before (not a hard link)."""
        with self.failures(path):
            if path == ".":
                parent, name = self._root, "."
            else:
                parent, name = self._parent(path)
            with contextlib.suppress(PermissionError):  # not root: keep our own ownership
                os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
            # after chown, which drops capabilities; the directory's descriptor
            # in /proc stands for the path, so no symlink is followed on the way
            xattrs.write(f"/proc/self/fd/{parent}/{name}", xattr_values)
            if kind != "symlink":
                # fchmodat follows a last symlink, but this name is one the
                # restore created itself with this kind, in a directory it holds
                os.chmod(name, mode, dir_fd=parent)
            os.utime(name, ns=(mtime_ns, mtime_ns), dir_fd=parent, follow_symlinks=False)
