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
import tarfile
import zlib

from app.errors import Conflict, NotFound
from app.validation import parse_json

from . import limits
from .legacy_schema import BackupCfg, VolumeCfg
from .objectstore import ObjectStore
from .progress import Progress
from .restore import make_durable, prepare_target

BASE = "convoy-objectstore/volumes/"


def volume_dir(volume: str) -> str:
    padded = volume.ljust(4, "!")
    return f"{BASE}{padded[0:2]}/{padded[2:4]}/{volume}/"


def backup_cfg_key(volume: str, backup: str) -> str:
    return f"{volume_dir(volume)}backups/backup_{backup}.cfg"


def has_backup(store: ObjectStore, volume: str, backup: str) -> bool:
    return store.exists(backup_cfg_key(volume, backup))


def read_backup_cfg(store: ObjectStore, volume: str, backup: str) -> BackupCfg:
    """A backup's .cfg, size-checked and validated; Conflict naming the object when it is not one."""
    key = backup_cfg_key(volume, backup)
    what = f"Convoy backup config {key} in {store.url}"
    try:
        data = store.get_at_most(key, limits.MAX_LEGACY_BACKUP_CFG, "Convoy backup config")
    except NotFound:
        raise NotFound(f"backup {backup} of volume {volume} is not in {store.url}") from None
    cfg = parse_json(BackupCfg, data, what=what, max_bytes=limits.MAX_LEGACY_BACKUP_CFG, error=Conflict)
    path = (cfg.get("SingleFile") or {}).get("FilePath")
    archives = volume_dir(volume) + "BackupFiles/"
    if path and (not path.startswith(archives) or "/" in path[len(archives):] or not path.endswith(".bak")):
        raise Conflict(f"{what} is not valid: SingleFile.FilePath {path!r} is not an archive of this volume ({archives}*.bak)")
    for i, block in enumerate(cfg.get("Blocks") or ()):
        if block["Offset"] % limits.LEGACY_BLOCK_SIZE:
            raise Conflict(f"{what} is not valid: Blocks.{i}.Offset {block['Offset']} is not a multiple of Convoy's 2 MiB block")
    return cfg


def list_backups(store: ObjectStore, volume: str | None = None) -> list[tuple[str, str]]:
    prefix = volume_dir(volume) + "backups/" if volume else BASE
    found = []
    for key in store.list(prefix):
        parts = key.split("/")
        if len(parts) == 7 and parts[5] == "backups" and parts[6].startswith("backup_") and parts[6].endswith(".cfg"):
            found.append((parts[4], parts[6][len("backup_") : -len(".cfg")]))
    return sorted(found)


def summary(cfg: dict, volume_cfg: dict | None = None) -> dict:
    single = (cfg.get("SingleFile") or {}).get("FilePath")
    return {
        "format": "convoy-0.5.2",
        "name": cfg.get("Name"),
        "volume": cfg.get("VolumeName"),
        "snapshot": cfg.get("SnapshotName"),
        "snapshot_created_at": cfg.get("SnapshotCreatedAt"),
        "created_at": cfg.get("CreatedTime"),
        "source": "archive" if single else "blocks",
        "driver": (volume_cfg or {}).get("Driver") or ("vfs" if single else "devicemapper"),
        "volume_size": (volume_cfg or {}).get("Size"),
    }


def read_volume_cfg(store: ObjectStore, volume: str) -> VolumeCfg | None:
    """A volume's volume.cfg; None when it is missing or unreadable (it only adds details)."""
    key = volume_dir(volume) + "volume.cfg"
    try:
        data = store.get_at_most(key, limits.MAX_SMALL_DOC, "Convoy volume config")
        return parse_json(VolumeCfg, data, what=f"Convoy volume config {key}", max_bytes=limits.MAX_SMALL_DOC, error=Conflict)
    except (NotFound, Conflict):
        return None


# -- VFS archives ---------------------------------------------------------------

def _member_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """Refuse paths that escape `dest` (as the 'tar' filter does) but keep modes as stored."""
    checked = tarfile.tar_filter(member, dest)
    return checked.replace(mode=member.mode, deep=False) if checked is not None else None


def restore_archive(store: ObjectStore, volume: str, backup: str, target: str, *, progress: Progress | None = None) -> dict:
    """Restore a Convoy VFS backup (`BackupFiles/*.bak`, a tar.gz) into `target`."""
    progress = progress or Progress()
    cfg = read_backup_cfg(store, volume, backup)
    path = (cfg.get("SingleFile") or {}).get("FilePath")
    if not path:
        raise Conflict(f"backup {backup} is a Convoy block backup; restore it to a block volume")
    prepare_target(target)
    try:
        progress.total_bytes = store.size(path)
    except NotFound:
        raise NotFound(f"backup {backup}: its archive {path} is missing from {store.url}") from None
    with store.open(path) as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r|gz") as archive:
                for member in archive:
                    progress.check("the restore")
                    archive.extract(member, target, filter=_member_filter, numeric_owner=True)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise Conflict(f"backup {backup}: its archive {path} is damaged ({e})") from None
    # tarfile in stream mode sets directory attributes as it goes; set them
    # again deepest first so extraction of children does not change mtimes.
    with store.open(path) as raw, tarfile.open(fileobj=raw, mode="r|gz") as archive:
        dirs = [m for m in archive if m.isdir()]
    for member in sorted(dirs, key=lambda m: m.name.rstrip("/").count("/"), reverse=True):
        dest = os.path.join(target, member.name)
        os.chmod(dest, member.mode)
        os.utime(dest, (member.mtime, member.mtime))
    make_durable(target)
    progress.done_bytes = progress.total_bytes
    progress.finish()
    return summary(cfg, read_volume_cfg(store, volume))


def verify_backup(store: ObjectStore, volume: str, backup: str) -> dict:
    """Read a Convoy backup through (archive or blocks) and check it, writing nothing."""
    cfg = read_backup_cfg(store, volume, backup)
    if (cfg.get("SingleFile") or {}).get("FilePath"):
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
    except Conflict as e:
        raise Conflict(f"{what} is corrupted: {e}") from None
    if hashlib.sha512(data).hexdigest()[:64] != checksum and hashlib.sha256(data).hexdigest() != checksum:
        raise Conflict(f"{what} is corrupted: its content does not match its name")
    return data


def _check_blocks_fit(cfg: BackupCfg, size: int | None, key: str) -> None:
    """Every listed block lies inside the volume, when its size is known."""
    for block in cfg.get("Blocks") or ():
        if size and block["Offset"] + limits.LEGACY_BLOCK_SIZE > size:
            raise Conflict(
                f"Convoy backup config {key} is not valid: a block at offset {block['Offset']} lies "
                f"outside the volume's {size} bytes"
            )


def verify_blocks(store: ObjectStore, volume: str, backup: str, cfg: dict | None = None) -> dict:
    cfg = cfg or read_backup_cfg(store, volume, backup)
    problems = []
    checksums = sorted({b["BlockChecksum"] for b in cfg.get("Blocks") or []})
    for checksum in checksums:
        try:
            _read_block(store, volume, backup, checksum)
        except (NotFound, Conflict) as e:
            problems.append(str(e))
    return {"backup": backup, "volume": volume, "ok": not problems, "blocks": len(checksums), "problems": problems}


def verify_archive(store: ObjectStore, volume: str, backup: str, cfg: dict | None = None) -> dict:
    cfg = cfg or read_backup_cfg(store, volume, backup)
    path = (cfg.get("SingleFile") or {}).get("FilePath")
    problems = []
    try:
        with store.open(path) as raw, tarfile.open(fileobj=raw, mode="r|gz") as archive:
            for member in archive:
                if member.isfile():
                    f = archive.extractfile(member)
                    while f.read(1 << 20):
                        pass
    except NotFound:
        problems.append(f"archive {path} is missing")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        problems.append(f"archive {path} is damaged: {e}")
    return {"backup": backup, "volume": volume, "ok": not problems, "problems": problems}


# -- device-mapper blocks ----------------------------------------------------------

def restore_blocks_to_image(store: ObjectStore, volume: str, backup: str, image_path: str, size: int | None = None) -> dict:
    """Write a Convoy block backup into `image_path` (an image file or block device).

    Unlisted ranges are left unwritten (zeros in a new sparse file or thin volume).
    Each block is checked against its name (SHA-512, first 64 hex digits).
    """
    cfg = read_backup_cfg(store, volume, backup)
    vol = read_volume_cfg(store, volume) or {}
    size = size or vol.get("Size")
    _check_blocks_fit(cfg, size, backup_cfg_key(volume, backup))
    fd = os.open(image_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if size and os.path.isfile(image_path):
            os.ftruncate(fd, size)
        for block in cfg.get("Blocks") or []:
            data = _read_block(store, volume, backup, block["BlockChecksum"])
            os.pwrite(fd, data, block["Offset"])
        os.fsync(fd)  # durable before the volume is handed out
    finally:
        os.close(fd)
    return summary(cfg, vol)
