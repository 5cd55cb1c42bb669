"""The backup engine: snapshots of volumes to object stores and back.

Public API (what the volume service calls), all in `engine`:
create_backup, create_image_backup, restore_backup, restore_image,
list_backups, inspect_backup,
delete_backup, verify_backup, collect_garbage. See docs/backup-format.md.
"""

from .backup import SnapshotSource, new_backup_name
from .engine import (
    collect_garbage,
    create_backup,
    create_image_backup,
    delete_backup,
    inspect_backup,
    list_backups,
    restore_backup,
    restore_image,
    verify_backup,
)
from .progress import Cancelled, Progress

__all__ = [
    "Cancelled",
    "Progress",
    "SnapshotSource",
    "collect_garbage",
    "create_backup",
    "create_image_backup",
    "delete_backup",
    "inspect_backup",
    "list_backups",
    "new_backup_name",
    "restore_backup",
    "restore_image",
    "verify_backup",
]
