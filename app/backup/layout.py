"""Where each object of the store lives (format version 1).

    convoy-store/config.json                           store config (versioned)
    convoy-store/volumes/<volume>/volume.json          per-volume manifest
    convoy-store/volumes/<volume>/index.v1.json.zst    per-volume list cache (index.py)
    convoy-store/volumes/<volume>/backups/<b>.json.zst per-backup manifest
    convoy-store/blocks/<h[0:2]>/<h[2:4]>/<h>          zstd block named by its BLAKE3
    convoy-store/locks/<id>.json                       store locks with expiry

Rancher Convoy's objects live beside ours under `convoy-objectstore/` and are
only read (see `legacy_convoy.py`).
"""

from __future__ import annotations

ROOT = "convoy-store"
CONFIG = f"{ROOT}/config.json"
VOLUMES = f"{ROOT}/volumes/"
BLOCKS = f"{ROOT}/blocks/"
LOCKS = f"{ROOT}/locks/"
MANIFEST_SUFFIX = ".json.zst"
INDEX_NAME = "index.v1.json.zst"  # the version is in the name: a newer format's index is another object
SEALED_MAGIC = b"CPE1"  # what every object of an encrypted store starts with (crypto.py)


def volume_key(volume: str) -> str:
    return f"{VOLUMES}{volume}/volume.json"


def volume_prefix(volume: str) -> str:
    return f"{VOLUMES}{volume}/"


def index_key(volume: str) -> str:
    return f"{VOLUMES}{volume}/{INDEX_NAME}"


def parse_index_key(key: str) -> str | None:
    """The volume of an index key, None for anything else."""
    if not key.startswith(VOLUMES) or not key.endswith("/" + INDEX_NAME):
        return None
    parts = key[len(VOLUMES):].split("/")
    return parts[0] if len(parts) == 2 else None


def backups_prefix(volume: str) -> str:
    return f"{VOLUMES}{volume}/backups/"


def backup_key(volume: str, backup: str) -> str:
    return f"{backups_prefix(volume)}{backup}{MANIFEST_SUFFIX}"


def block_key(digest: str) -> str:
    return f"{BLOCKS}{digest[0:2]}/{digest[2:4]}/{digest}"


def digest_of_block_key(key: str) -> str | None:
    if not key.startswith(BLOCKS):
        return None
    name = key.rsplit("/", 1)[-1]
    return name if len(name) == 64 and all(c in "0123456789abcdef" for c in name) else None


def lock_key(lock_id: str) -> str:
    return f"{LOCKS}{lock_id}.json"


def parse_backup_key(key: str) -> tuple[str, str] | None:
    """(volume, backup) for a manifest key, None for anything else."""
    if not key.startswith(VOLUMES) or not key.endswith(MANIFEST_SUFFIX):
        return None
    parts = key[len(VOLUMES):].split("/")
    if len(parts) != 3 or parts[1] != "backups":
        return None
    return parts[0], parts[2][: -len(MANIFEST_SUFFIX)]
