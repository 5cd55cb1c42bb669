"""The backup engine: snapshots of volumes to object stores and back.

Public API (what the backup service calls), all in `engine`:
create_backup, create_image_backup, restore_backup, restore_image,
list_backups, inspect_backup, delete_backup, verify_backup,
collect_garbage. See docs/backup-format.md.

Importing a module of this package (its URLs, its Progress) does not load
the engine and its hashing and compression libraries: the names below are
resolved on first use, so the daemon and the CLI load them only where a
backup runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SnapshotSource": ".backup",
    "new_backup_name": ".backup",
    "Cancelled": ".progress",
    "Progress": ".progress",
    **{
        name: ".engine"
        for name in (
            "collect_garbage",
            "create_backup",
            "create_image_backup",
            "delete_backup",
            "init_store",
            "inspect_backup",
            "list_backups",
            "restore_backup",
            "restore_image",
            "verify_backup",
        )
    },
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
