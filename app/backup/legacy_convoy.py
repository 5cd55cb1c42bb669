"""Read backups written by rancher/convoy 0.5.2 (its "objectstore" format).

Layout under the destination (a vfs:// directory or an s3:// prefix):

    convoy-objectstore/volumes/<v[0:2]>/<v[2:4]>/<v>/volume.cfg
    .../<v>/backups/backup_<name>.cfg        JSON, Go field names
    .../<v>/BackupFiles/<name>.bak           VFS volumes: one tar.gz of the tree
    .../<v>/blocks/<c[0:2]>/<c[2:4]>/<c>.blk device-mapper: gzip of one 2 MiB block

(volume names shorter than 4 characters are padded with '!' in the
directory levels). These are read only; new backups use our format.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from typing import IO, BinaryIO, NoReturn

from app.errors import Conflict, Damaged, NotFound
from app.json_types import JSONObject
from app.validation import parse_json

from . import limits, manifest, tree
from .legacy_schema import BackupCfg, VolumeCfg
from .objectstore import ObjectStore
from .progress import Progress
from .restore_target import (
    RestoreTarget,
    TreeRules,
    make_durable,
    size_image,
    write_image_at,
)
from .schemas import DirEntry, Entry

BASE = "convoy-objectstore/volumes/"


def volume_dir(volume: str) -> str:
    padded = volume.ljust(4, "!")
    # Convoy joined these with Go's filepath.Join, which cleans the path: for a
    # name such as "xy.." the second level ".." cancels the first. Cleaning it
    # the same way finds its objects and never hands a store a ".." key.
    return posixpath.normpath(f"{BASE}{padded[0:2]}/{padded[2:4]}/{volume}") + "/"


def backup_cfg_key(volume: str, backup: str) -> str:
    return f"{volume_dir(volume)}backups/backup_{backup}.cfg"


def has_backup(store: ObjectStore, volume: str, backup: str) -> bool:
    return store.exists(backup_cfg_key(volume, backup))


def read_backup_cfg(store: ObjectStore, volume: str, backup: str) -> BackupCfg:
    """A backup's .cfg, size-checked and validated; Damaged naming the object when it is not one."""
    key = backup_cfg_key(volume, backup)
    what = f"Convoy backup config {key} in {store.url}"
    try:
        data = store.get_at_most(key, limits.MAX_LEGACY_BACKUP_CFG, "Convoy backup config")
    except NotFound:
        raise NotFound(f"backup {backup} of volume {volume} is not in {store.url}") from None
    cfg: BackupCfg = parse_json(BackupCfg, bytes(data), what=what, max_bytes=limits.MAX_LEGACY_BACKUP_CFG, error=Damaged)
    path = archive_path(cfg)
    archives = volume_dir(volume) + "BackupFiles/"
    if path and (not path.startswith(archives) or "/" in path[len(archives):] or not path.endswith(".bak")):
        raise Damaged(f"{what} is not valid: SingleFile.FilePath {path!r} is not an archive of this volume ({archives}*.bak)")
    for i, block in enumerate(cfg.get("Blocks") or ()):
        if block["Offset"] % limits.LEGACY_BLOCK_SIZE:
            raise Damaged(f"{what} is not valid: Blocks.{i}.Offset {block['Offset']} is not a multiple of Convoy's 2 MiB block")
    return cfg


def list_backups(store: ObjectStore, volume: str | None = None) -> list[tuple[str, str]]:
    prefix = volume_dir(volume) + "backups/" if volume else BASE
    found = []
    for key in store.list(prefix):
        head, _, file = key.rpartition("/")
        vdir, _, folder = head.rpartition("/")
        volume = vdir.rpartition("/")[2]
        if folder == "backups" and file.startswith("backup_") and file.endswith(".cfg") and volume_dir(volume) == vdir + "/":
            found.append((volume, file[len("backup_") : -len(".cfg")]))
    return sorted(found)


def archive_path(cfg: BackupCfg) -> str | None:
    """The archive of a VFS backup; None for a device-mapper (block) backup."""
    single = cfg.get("SingleFile")
    return single.get("FilePath") if single else None


def summary(cfg: BackupCfg, volume_cfg: VolumeCfg | None = None) -> JSONObject:
    single = archive_path(cfg)
    volume_cfg = volume_cfg or {}
    return {
        "format": "convoy-0.5.2",
        "name": cfg.get("Name"),
        "volume": cfg.get("VolumeName"),
        "snapshot": cfg.get("SnapshotName"),
        "snapshot_created_at": cfg.get("SnapshotCreatedAt"),
        "created_at": cfg.get("CreatedTime"),
        "source": "archive" if single else "blocks",
        "driver": volume_cfg.get("Driver") or ("vfs" if single else "devicemapper"),
        # Convoy writes Size 0 for a VFS volume, which has no size
        "volume_size": volume_cfg.get("Size") or None,
    }


def read_volume_cfg(store: ObjectStore, volume: str) -> VolumeCfg | None:
    """A volume's volume.cfg; None when it is missing or unreadable (it only adds details)."""
    key = volume_dir(volume) + "volume.cfg"
    try:
        data = bytes(store.get_at_most(key, limits.MAX_SMALL_DOC, "Convoy volume config"))
        return parse_json(VolumeCfg, data, what=f"Convoy volume config {key}", max_bytes=limits.MAX_SMALL_DOC, error=Damaged)
    except (NotFound, Damaged):
        return None


# -- VFS archives ---------------------------------------------------------------

_CHUNK = 1 << 20
MAX_HEADER_RECORD = 1 << 20  # a GNU long name or a pax header: a path or two in a real archive
_RECORD_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a long-name or pax record whole, and a sparse map for as
    long as the archive says: refuse an oversized record, and sparse members
    (Convoy archived with a plain `tar cf`, which never writes them), before
    it does, so memory stays bounded whatever the archive declares."""

    # tarfile's private hooks (no stubs describe them): the only place to stop a record before it is read
    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _RECORD_TYPES and self.size > MAX_HEADER_RECORD:
            raise tarfile.HeaderError(
                f"a header record of {self.size} bytes, more than the {MAX_HEADER_RECORD} a long name or pax header needs"
            )
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise tarfile.HeaderError(f"{self.name!r} is a sparse member, which Convoy never wrote")
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return member

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: object, tarfile_: tarfile.TarFile) -> NoReturn:
        raise tarfile.HeaderError(f"{next.name!r} is a sparse member, which Convoy never wrote")


def _member_path(name: str) -> str:
    """The path inside the target an archive member names (Convoy archived `./a/b`)."""
    if name in (".", "./"):
        return "."
    return name.removeprefix("./")


def _open_archive(raw: BinaryIO) -> tarfile.TarFile:
    """Read a Convoy archive as a stream (it is never held whole), headers bounded."""
    return tarfile.open(fileobj=raw, mode="r|gz", tarinfo=_BoundedTarInfo)


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Each member in turn, forgotten once handled: TarFile keeps every TarInfo
    it reads in `members`, even as a stream, which for an archive of millions
    of members is unbounded memory. (Nothing here looks members up by name.)"""
    while (member := archive.next()) is not None:
        yield member
        archive.members.clear()  # type: ignore[attr-defined]  # TarFile's own list, not in the stubs


def _mtime_ns(mtime: float) -> int | float:
    try:
        return round(mtime * 1_000_000_000)
    except (OverflowError, ValueError):
        return mtime  # not a finite number: the schema says so


# os.makedev takes C ints; base-256 tar headers hold any number, negatives too
_MAX_DEVICE_PART = (1 << 31) - 1


def _device_number(member: tarfile.TarInfo, what: str) -> int:
    for part, value in (("major", member.devmajor), ("minor", member.devminor)):
        if not 0 <= value <= _MAX_DEVICE_PART:
            raise Damaged(
                f"{what} holds {member.name!r}, a device with {part} number {value}, outside 0..{_MAX_DEVICE_PART}; "
                "the archive is damaged: refusing to restore it"
            )
    return os.makedev(member.devmajor, member.devminor)


def _member_entry(member: tarfile.TarInfo, what: str) -> Entry:
    """The member as a tree entry, checked against the same schema as ours."""
    if member.sparse is not None:  # a GNU 0.x sparse map from a pax header
        raise Damaged(f"{what} holds {member.name!r}, a sparse member, which Convoy never wrote; refusing to restore it")
    if member.isdir():
        kind = "dir"
    elif member.isreg():
        kind = "file"
    elif member.issym():
        kind = "symlink"
    elif member.islnk():
        kind = "hardlink"
    elif member.ischr() or member.isblk() or member.isfifo():
        # a container's data, kept as data as in our format (docs/security.md)
        kind = "chardev" if member.ischr() else "blockdev" if member.isblk() else "fifo"
    else:
        raise Damaged(
            f"{what} holds {member.name!r}, a member of tar type {member.type!r} that Convoy never wrote; "
            "refusing to restore it (nothing outside the target was touched)"
        )
    raw: JSONObject = {
        "path": _member_path(member.name),
        "type": kind,
        "mode": member.mode & 0o7777,
        "uid": member.uid,
        "gid": member.gid,
        "mtime_ns": _mtime_ns(member.mtime),
    }
    if kind == "file":
        raw["size"] = member.size
        raw["blocks"] = []  # the archive holds the data; the schema wants a block map
    elif kind in ("symlink", "hardlink"):
        raw["target"] = _member_path(member.linkname) if kind == "hardlink" else member.linkname
    elif kind in ("chardev", "blockdev"):
        raw["rdev"] = _device_number(member, what)
    return tree.check_entry(raw, what)


def _restore_member(
    out: RestoreTarget, archive: tarfile.TarFile, member: tarfile.TarInfo, dirs: list[DirEntry], progress: Progress
) -> None:
    entry = _member_entry(member, out.what)
    path = entry["path"]
    if entry["type"] == "dir":
        out.mkdir(path)
        dirs.append(entry)  # its metadata once everything inside it exists
        return
    if entry["type"] == "symlink":
        out.symlink(path, entry["target"])
    elif entry["type"] == "hardlink":
        out.hardlink(path, entry["target"])
        return  # shares the metadata of the file it links to
    elif entry["type"] == "fifo":
        out.special(path, "fifo")
    elif entry["type"] == "chardev" or entry["type"] == "blockdev":
        out.special(path, entry["type"], entry["rdev"])
    else:
        fd = out.create_file(path, entry["size"])  # full size first: runs of zeros stay holes
        try:
            _copy_data(archive.extractfile(member), fd, out, path, progress)
        finally:
            os.close(fd)
    out.set_metadata(path, entry["type"], entry["mode"], entry["uid"], entry["gid"], entry["mtime_ns"])


def _copy_data(data: IO[bytes] | None, fd: int, out: RestoreTarget, path: str, progress: Progress) -> None:
    """A regular member's data into `fd`, skipping runs of zeros (they stay holes)."""
    if data is None:  # tarfile has none for a member that is not a regular file; ours is one
        raise Damaged(f"{out.what} holds {path!r}, a file whose data tarfile cannot read")
    pos = 0
    while chunk := data.read(_CHUNK):
        progress.check("the restore")
        if chunk.count(0) != len(chunk):
            view = memoryview(chunk)
            with out.failures(path):
                while view:
                    n = os.pwrite(fd, view, pos)
                    view, pos = view[n:], pos + n
        else:
            pos += len(chunk)


def restore_archive(
    store: ObjectStore, volume: str, backup: str, target: str, *, progress: Progress | None = None
) -> JSONObject:
    """Restore a Convoy VFS backup (`BackupFiles/*.bak`, a tar.gz) into `target`.

    Each member goes through the same checks as our own entries
    (`restore_target`): a member that could reach outside the target fails
    the restore, naming the member.
    """
    progress = progress or Progress()
    cfg = read_backup_cfg(store, volume, backup)
    path = archive_path(cfg)
    if not path:
        raise Conflict(f"backup {backup} is a Convoy block backup; restore it to a block volume")
    try:
        progress.total_bytes = store.size(path)
    except NotFound:
        raise NotFound(f"backup {backup}: its archive {path} is missing from {store.url}") from None
    dirs: list[DirEntry] = []
    with RestoreTarget(target, f"Convoy backup {backup} of volume {volume}") as out:
        with store.open(path) as raw:
            try:
                with _open_archive(raw) as archive:
                    for member in _members(archive):
                        progress.check("the restore")
                        _restore_member(out, archive, member, dirs, progress)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                raise Damaged(f"backup {backup}: its archive {path} is damaged ({e})") from None
        out.finish_dirs(dirs)
    make_durable(target)
    progress.done_bytes = progress.total_bytes
    progress.finish()
    return summary(cfg, read_volume_cfg(store, volume))


def verify_backup(store: ObjectStore, volume: str, backup: str) -> JSONObject:
    """Read a Convoy backup through (archive or blocks) and check it, writing nothing."""
    cfg = read_backup_cfg(store, volume, backup)
    if archive_path(cfg):
        return verify_archive(store, volume, backup, cfg)
    return verify_blocks(store, volume, backup, cfg)


def _block_key(volume: str, checksum: str) -> str:
    return f"{volume_dir(volume)}blocks/{checksum[0:2]}/{checksum[2:4]}/{checksum}.blk"


def _read_block(store: ObjectStore, volume: str, backup: str, checksum: str) -> bytes:
    what = f"block {checksum} of backup {backup}"
    key = _block_key(volume, checksum)
    try:
        stored = store.get_at_most(key, limits.LEGACY_MAX_STORED_BLOCK, "Convoy block")
        data = limits.gunzip_capped(stored, limits.LEGACY_BLOCK_SIZE, f"Convoy block {key}")
    except NotFound:
        raise NotFound(f"{what} is missing from {store.url}") from None
    except Damaged as e:
        raise Damaged(f"{what} is corrupted: {e}") from None
    if hashlib.sha512(data).hexdigest()[:64] != checksum and hashlib.sha256(data).hexdigest() != checksum:
        raise Damaged(f"{what} is corrupted: its content does not match its name")
    return data


def _check_blocks_fit(cfg: BackupCfg, size: int | None, key: str) -> None:
    """Every listed block lies inside the volume, when its size is known."""
    for block in cfg.get("Blocks") or ():
        if size and block["Offset"] + limits.LEGACY_BLOCK_SIZE > size:
            raise Damaged(
                f"Convoy backup config {key} is not valid: a block at offset {block['Offset']} lies "
                f"outside the volume's {size} bytes"
            )


def verify_blocks(store: ObjectStore, volume: str, backup: str, cfg: BackupCfg | None = None) -> JSONObject:
    cfg = cfg or read_backup_cfg(store, volume, backup)
    problems = []
    checksums = sorted({b["BlockChecksum"] for b in cfg.get("Blocks") or []})
    for checksum in checksums:
        try:
            _read_block(store, volume, backup, checksum)
        except (NotFound, Damaged) as e:
            problems.append(str(e))
    return {"backup": backup, "volume": volume, "ok": not problems, "blocks": len(checksums), "problems": problems}


def verify_archive(store: ObjectStore, volume: str, backup: str, cfg: BackupCfg | None = None) -> JSONObject:
    """Read the archive through, checking each member as a restore would (nothing is written)."""
    cfg = cfg or read_backup_cfg(store, volume, backup)
    path = archive_path(cfg)
    if not path:
        raise Conflict(f"backup {backup} is a Convoy block backup, which has no archive to read")
    rules = TreeRules(f"Convoy backup {backup} of volume {volume}")
    problems = []
    try:
        with store.open(path) as raw, _open_archive(raw) as archive:
            for member in _members(archive):
                entry = _member_entry(member, rules.what)
                rules.check(entry["path"], entry["type"], manifest.link_target(entry))
                data = archive.extractfile(member) if member.isfile() else None
                while data is not None and data.read(_CHUNK):
                    pass
    except NotFound:
        problems.append(f"archive {path} is missing")
    except Damaged as e:
        problems.append(str(e))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        problems.append(f"archive {path} is damaged: {e}")
    return {"backup": backup, "volume": volume, "ok": not problems, "problems": problems}


# -- device-mapper blocks ----------------------------------------------------------

def restore_blocks_to_image(
    store: ObjectStore, volume: str, backup: str, image_path: str, size: int | None = None
) -> JSONObject:
    """Write a Convoy block backup into `image_path` (an image file or block device).

    Unlisted ranges are left unwritten (zeros in a new sparse file or thin volume).
    Each block is checked against its name (SHA-512, first 64 hex digits).
    """
    cfg = read_backup_cfg(store, volume, backup)
    vol: VolumeCfg = read_volume_cfg(store, volume) or {}
    sized_by = "the size asked for" if size else f"its {volume_dir(volume)}volume.cfg"
    size = size or vol.get("Size")
    cfg_key = backup_cfg_key(volume, backup)
    _check_blocks_fit(cfg, size, cfg_key)
    fd = os.open(image_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if size and os.path.isfile(image_path):
            size_image(fd, size, image_path, f"Convoy backup {backup} (sized by {sized_by})")
        for block in cfg.get("Blocks") or []:
            data = _read_block(store, volume, backup, block["BlockChecksum"])
            write_image_at(fd, data, block["Offset"], image_path, f"Convoy backup {cfg_key}")
        os.fsync(fd)  # durable before the volume is handed out
    finally:
        os.close(fd)
    return {**summary(cfg, vol), "image_size": size}
