"""Walk a snapshot directory into manifest entries (metadata only, no data).

An entry is a dict: path (relative, "." for the root), type, mode, uid, gid,
mtime_ns; plus size for files, target for symlinks and hard links, rdev for
device nodes. Regular files get their block map filled in by the backup.
`Entry` is its schema: what a restore accepts from a store, with the range
of every number, so a hostile entry fails before anything is created.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Annotated, Literal, NotRequired

from pydantic import Field, StrictInt, StrictStr
from typing_extensions import TypedDict

from app.errors import Conflict, InvalidInput, NotFound
from app.validation import validate

from . import xattrs

MAX_FILE_SIZE = 2**63 - 1  # off_t: the largest size a Linux file can have

Size = Annotated[StrictInt, Field(ge=0, le=MAX_FILE_SIZE)]
Mode = Annotated[StrictInt, Field(ge=0, le=0o7777)]
Id = Annotated[StrictInt, Field(ge=0, le=2**32 - 2)]  # 2**32-1 means "leave unchanged" to chown
TimeNs = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]
Digest = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
Block = tuple[Size, Annotated[StrictInt, Field(gt=0)], Digest]  # offset, length, BLAKE3 of the data


# TypedDict from typing_extensions: pydantic needs it before Python 3.12
class _Common(TypedDict):
    path: StrictStr
    mode: Mode
    uid: Id
    gid: Id
    mtime_ns: TimeNs
    xattrs: NotRequired[dict[Annotated[StrictStr, Field(pattern=r"^[^\x00]+$")], Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9+/]*={0,2}$")]]]


class DirEntry(_Common):
    type: Literal["dir"]


class FileEntry(_Common):
    type: Literal["file"]
    size: Size
    blocks: NotRequired[list[Block]]


class LinkEntry(_Common):
    type: Literal["symlink", "hardlink"]
    target: Annotated[StrictStr, Field(min_length=1)]


class FifoEntry(_Common):
    type: Literal["fifo"]


class DeviceEntry(_Common):
    type: Literal["chardev", "blockdev"]
    rdev: Annotated[StrictInt, Field(ge=0, lt=2**64)]


Entry = Annotated[DirEntry | FileEntry | LinkEntry | FifoEntry | DeviceEntry, Field(discriminator="type")]


def check_entry(raw: object, what: str) -> dict:
    """One entry, validated; Conflict naming the entry's path when it is not valid."""
    path = raw.get("path") if isinstance(raw, dict) else None
    name = repr(path) if isinstance(path, str) else "without a path"
    entry = validate(Entry, raw, what=f"{what}: entry {name}", error=Conflict)
    if entry["type"] == "file":
        _check_blocks(entry, what)
    return entry


def check_entries(raw: object, what: str) -> list[dict]:
    """A backup's list of entries, validated as a whole before anything is restored."""
    try:
        entries = validate(list[Entry], raw, what=f"{what}: its list of entries", error=Conflict)
    except Conflict:
        if isinstance(raw, list):
            for item in raw:  # name the first bad entry by its path
                check_entry(item, what)
        raise
    for entry in entries:
        if entry["type"] == "file":
            _check_blocks(entry, what)
    return entries


def _check_blocks(entry: dict, what: str) -> None:
    """A file's blocks lie inside its size, in order, without overlapping."""
    end = 0
    for offset, length, _digest in entry.get("blocks", ()):
        if offset < end or offset + length > entry["size"]:
            raise Conflict(
                f"{what}: entry {entry['path']!r} lists a block at offset {offset} of {length} bytes, "
                f"outside its size of {entry['size']} bytes or overlapping another; the backup is damaged"
            )
        end = offset + length


def _entry(rel: str, st: os.stat_result) -> dict:
    return {
        "path": rel,
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime_ns": st.st_mtime_ns,
    }


def _add_xattrs(entry: dict, path: str) -> None:
    values = xattrs.read(path)
    if values:
        entry["xattrs"] = values


def walk(root: str) -> Iterator[tuple[dict, os.stat_result]]:
    """Every object under `root` (root first, parents before children, sorted)."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise NotFound(f"snapshot directory {root} does not exist") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInput(f"{root} is not a directory")
    root_entry = _entry(".", st)
    root_entry["type"] = "dir"
    _add_xattrs(root_entry, root)
    yield root_entry, st
    seen_inodes: dict[tuple[int, int], str] = {}
    stack = [("", root)]
    while stack:
        rel_dir, abs_dir = stack.pop()
        with os.scandir(abs_dir) as it:
            children = sorted(it, key=lambda e: e.name)
        subdirs = []
        for child in children:
            rel = f"{rel_dir}{child.name}"
            st = child.stat(follow_symlinks=False)
            entry = _entry(rel, st)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                entry["type"] = "dir"
                subdirs.append((rel + "/", child.path))
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen_inodes:
                    entry["type"] = "hardlink"
                    entry["target"] = seen_inodes[key]
                else:
                    if st.st_nlink > 1:
                        seen_inodes[key] = rel
                    entry["type"] = "file"
                    entry["size"] = st.st_size
            elif stat.S_ISLNK(mode):
                entry["type"] = "symlink"
                entry["target"] = os.readlink(child.path)
            elif stat.S_ISFIFO(mode):
                entry["type"] = "fifo"
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                entry["type"] = "chardev" if stat.S_ISCHR(mode) else "blockdev"
                entry["rdev"] = st.st_rdev
            else:  # sockets are not data; skip them
                continue
            if entry["type"] != "hardlink":
                _add_xattrs(entry, child.path)
            yield entry, st
        # push in reverse so directories come out in sorted order
        stack.extend(reversed(subdirs))
