"""A backup of a live tree whose file shrinks under it fails instead of storing a hole."""

import os

import pytest

from app.backup import Progress, SnapshotSource, create_backup, list_backups
from app.errors import Conflict

MIB = 1 << 20


def test_a_file_that_shrinks_during_the_backup_fails_it(tmp_path):
    """A live volume's file cut short while its blocks are read: the backup fails saying so
    (nothing is committed), instead of storing a file with a hole where data was."""
    vol = tmp_path / "vol"
    vol.mkdir()
    data = vol / "data.bin"
    data.write_bytes(os.urandom(64 * MIB))

    def shrink_once(_progress):
        if data.stat().st_size:
            os.truncate(data, 0)

    store = f"vfs://{tmp_path}/store"
    with pytest.raises(Conflict, match=r"data\.bin changed during the backup.*back up a snapshot"):
        create_backup(store, "vol1", SnapshotSource("s", str(vol)), progress=Progress(callback=shrink_once, interval=0))
    assert list_backups(store) == []
