"""Walk a snapshot directory into manifest entries (metadata only, no data).

An entry is a dict: path (relative, "." for the root), type, mode, uid, gid,
mtime_ns; plus size for files, target for symlinks and hard links, rdev for
device nodes. Regular files get their block map filled in by the backup.
`schemas.Entry` is its schema: what a restore accepts from a store, with the
range of every number, so a hostile entry fails before anything is created.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from app.errors import Damaged, InvalidInput, NotFound
from app.fs import xattrs
from app.json_types import JSONObject
from app.validation import validate

from .schemas import INT64_MAX, Entry

MAX_FILE_SIZE = INT64_MAX  # off_t: the largest size a Linux file can have


def check_entry(raw: object, what: str) -> Entry:
    """One entry, validated; Damaged naming the entry's path when it is not valid."""
    path = raw.get("path") if isinstance(raw, dict) else None
    name = repr(path) if isinstance(path, str) else "without a path"
    entry: Entry = validate(Entry, raw, what=f"{what}: entry {name}", error=Damaged)
    return entry


def _entry(rel: str, st: os.stat_result) -> JSONObject:
    return {
        "path": rel,
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime_ns": st.st_mtime_ns,
    }


def _add_xattrs(entry: JSONObject, path: str) -> None:
    values = xattrs.read(path)
    if values:
        entry["xattrs"] = values


def walk(root: str) -> Iterator[tuple[JSONObject, os.stat_result]]:
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
