"""Run one backup or restore in its own process, with the store slowed down so
a test can kill -9 it half-way. Usage:
    python -m tests.backup.slow_worker backup DEST VOLUME SNAPDIR
    python -m tests.backup.slow_worker restore URL TARGET
    python -m tests.backup.slow_worker backup-stall-index DEST VOLUME SNAPDIR
(the last stops for good once the manifest is written, before the volume's index)
"""

import sys
import time

from app.backup import SnapshotSource, create_backup, restore_backup
from app.backup.layout import INDEX_NAME
from app.backup.objectstore.vfs import VfsStore

STALL_INDEX = sys.argv[1:2] == ["backup-stall-index"]

_put, _get, _get_at_most = VfsStore.put, VfsStore.get_view, VfsStore.get_at_most


def slow_put(self, key, data):
    if STALL_INDEX and key.endswith(INDEX_NAME):
        time.sleep(3600)
    if "/blocks/" in key:
        time.sleep(0.05)
    return _put(self, key, data)


def slow_get(self, key):
    if "/blocks/" in key:
        time.sleep(0.05)
    return _get(self, key)


def slow_get_at_most(self, key, *args, **kwargs):  # how a restore reads blocks
    if "/blocks/" in key:
        time.sleep(0.05)
    return _get_at_most(self, key, *args, **kwargs)


VfsStore.put, VfsStore.get_view, VfsStore.get_at_most = slow_put, slow_get, slow_get_at_most

if __name__ == "__main__":
    if sys.argv[1] in ("backup", "backup-stall-index"):
        print(create_backup(sys.argv[2], sys.argv[3], SnapshotSource("snap", sys.argv[4]))["url"], flush=True)
    else:
        restore_backup(sys.argv[2], sys.argv[3])
