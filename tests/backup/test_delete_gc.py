"""Delete + garbage collection keeps every other backup restorable."""

import os

import pytest

from app.backup import (
    SnapshotSource,
    collect_garbage,
    create_backup,
    delete_backup,
    layout,
    list_backups,
    restore_backup,
    verify_backup,
)
from app.backup.locks import StoreLock
from app.backup.objectstore import open_store
from app.errors import Conflict, NotFound
from tests.backup.treecheck import describe


def block_count(store_dir):
    root = store_dir / layout.BLOCKS
    return sum(len(files) for _d, _s, files in os.walk(root))


def test_delete_collects_only_unused_blocks(dest, tmp_path):
    url, endpoint = dest
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "shared.bin").write_bytes(os.urandom(2 << 20))
    (vol / "v1only.bin").write_bytes(os.urandom(100_000))
    b1 = create_backup(url, "vol1", SnapshotSource("s1", str(vol)), s3_endpoint=endpoint)
    expected_b1 = describe(vol)

    (vol / "v1only.bin").unlink()
    (vol / "v2only.bin").write_bytes(os.urandom(100_000))
    b2 = create_backup(url, "vol1", SnapshotSource("s2", str(vol)), s3_endpoint=endpoint)
    expected_b2 = describe(vol)
    b3 = create_backup(url, "othervol", SnapshotSource("o1", str(vol)), s3_endpoint=endpoint)

    result = delete_backup(b1["url"], s3_endpoint=endpoint)
    assert result["blocks_removed"] == 1  # v1only.bin's block; shared.bin's are still used

    assert [b["name"] for b in list_backups(url, s3_endpoint=endpoint)] == [b3["name"], b2["name"]]
    with pytest.raises(NotFound):
        restore_backup(b1["url"], str(tmp_path / "gone"), s3_endpoint=endpoint)
    for b, expected in ((b2, expected_b2), (b3, expected_b2)):
        assert verify_backup(b["url"], s3_endpoint=endpoint)["ok"]
        target = tmp_path / ("r-" + b["name"])
        restore_backup(b["url"], str(target), s3_endpoint=endpoint)
        assert describe(target) == expected

    delete_backup(b2["url"], s3_endpoint=endpoint)
    delete_backup(b3["url"], s3_endpoint=endpoint)
    assert list_backups(url, s3_endpoint=endpoint) == []
    store = open_store(url, s3_endpoint=endpoint)
    assert list(store.list(layout.BLOCKS)) == []
    _ = expected_b1


def test_delete_refuses_while_a_backup_holds_the_store(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_bytes(b"data")
    url = f"vfs://{tmp_path}/store"
    b1 = create_backup(url, "vol1", SnapshotSource("s1", str(vol)))
    store = open_store(url)
    with StoreLock(store, "shared", "backup of another volume"):
        with pytest.raises(Conflict) as err:
            delete_backup(b1["url"])
        assert "busy" in str(err.value) and "backup of another volume" in str(err.value)
    delete_backup(b1["url"])  # once the backup is done


def test_delete_keeps_every_block_when_another_manifest_is_unreadable(tmp_path):
    """The backup asked for goes; no block does, since the unreadable backup may use any."""
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_bytes(b"data")
    url = f"vfs://{tmp_path}/store"
    b1 = create_backup(url, "vol1", SnapshotSource("s1", str(vol)))
    (vol / "g").write_bytes(b"only in b1")
    b1b = create_backup(url, "vol1", SnapshotSource("s2", str(vol)))
    b2 = create_backup(url, "vol2", SnapshotSource("s1", str(vol)))
    (tmp_path / "store" / layout.backup_key("vol2", b2["name"])).write_bytes(b"garbage")
    before = block_count(tmp_path / "store")
    result = delete_backup(b1b["url"])
    assert result["deleted"] == b1b["name"] and result["blocks_removed"] == 0
    assert f"backup {b2['name']} of volume vol2" in result["warning"] and "kept" in result["warning"]
    assert block_count(tmp_path / "store") == before
    assert restore_backup(b1["url"], str(tmp_path / "r"))  # b1 is intact


def test_gc_removes_blocks_of_an_abandoned_backup(tmp_path):
    url = f"vfs://{tmp_path}/store"
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_bytes(b"kept")
    b1 = create_backup(url, "vol1", SnapshotSource("s1", str(vol)))
    store = open_store(url)
    from app.backup import blocks

    orphan = blocks.digest(b"orphan")
    store.put(layout.block_key(orphan), blocks.encode(b"orphan"))
    assert collect_garbage(url)["blocks_removed"] == 1
    assert verify_backup(b1["url"])["ok"]
