"""A corrupted or missing block is found by verify and stops a restore, naming the file."""

import os

import pytest

from app.backup import SnapshotSource, create_backup, layout, manifest, restore_backup, verify_backup
from app.backup.objectstore import open_store
from app.errors import Damaged, NotFound


@pytest.fixture
def backed_up(tmp_path):
    vol = tmp_path / "vol"
    (vol / "a").mkdir(parents=True)
    (vol / "a" / "one.bin").write_bytes(b"1" * 3000)
    (vol / "two.bin").write_bytes(b"2" * 5000)
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", str(vol)))
    store = open_store(f"vfs://{tmp_path}/store")
    doc = manifest.read_backup(store, "vol1", result["name"])
    by_path = {e["path"]: e for e in doc["entries"]}
    return result["url"], tmp_path / "store", by_path


def block_file(store_dir, digest):
    return store_dir / layout.block_key(digest)


def test_corrupted_block_is_reported(backed_up, tmp_path):
    url, store_dir, entries = backed_up
    digest = entries["a/one.bin"]["blocks"][0][2]
    path = block_file(store_dir, digest)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))

    report = verify_backup(url)
    assert not report["ok"]
    assert report["corrupted_count"] == 1 and report["missing_count"] == 0
    assert report["corrupted"][0]["files"] == ["a/one.bin"]
    assert "damaged" in report["message"] and "a/one.bin" in report["message"]

    with pytest.raises(Damaged) as err:
        restore_backup(url, str(tmp_path / "r"))
    assert "corrupted" in str(err.value) and "a/one.bin" in str(err.value)


def test_missing_block_is_reported(backed_up, tmp_path):
    url, store_dir, entries = backed_up
    digest = entries["two.bin"]["blocks"][0][2]
    block_file(store_dir, digest).unlink()

    report = verify_backup(url)
    assert not report["ok"]
    assert report["missing"] == [{"block": digest, "files": ["two.bin"]}]

    with pytest.raises(NotFound) as err:
        restore_backup(url, str(tmp_path / "r"))
    assert "missing" in str(err.value) and "two.bin" in str(err.value)


def test_block_swapped_for_another_valid_block_is_caught(backed_up, tmp_path):
    url, store_dir, entries = backed_up
    one = block_file(store_dir, entries["a/one.bin"]["blocks"][0][2])
    two = block_file(store_dir, entries["two.bin"]["blocks"][0][2])
    one.write_bytes(two.read_bytes())  # decompresses fine, wrong content
    report = verify_backup(url)
    assert report["corrupted_count"] == 1
    assert report["corrupted"][0]["files"] == ["a/one.bin"]


def test_a_crafted_manifest_cannot_write_outside_the_target(tmp_path):
    """A store is input: a manifest that routes a file through a symlink, or
    hard-links to one, is refused and nothing lands outside the target."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host file\n")
    store = open_store(f"vfs://{tmp_path}/store")
    manifest.ensure_config(store)
    from app.backup import blocks as b

    data = b"pwned\n"
    store.put(layout.block_key(b.digest(data)), b.encode(data))
    base = {"mode": 0o755, "uid": 0, "gid": 0, "mtime_ns": 0}
    crafted = [
        [  # a symlink to the outside, then a file "inside" it
            {"path": ".", "type": "dir", **base},
            {"path": "esc", "type": "symlink", "target": str(outside), **base},
            {"path": "esc/secret", "type": "file", "size": len(data), "blocks": [[0, len(data), b.digest(data)]], **base},
        ],
        [  # a hard link to a symlink that points outside
            {"path": ".", "type": "dir", **base},
            {"path": "esc", "type": "symlink", "target": str(outside / "secret"), **base},
            {"path": "hl", "type": "hardlink", "target": "esc", **base},
        ],
        [{"path": ".", "type": "dir", **base}, {"path": "../x", "type": "dir", **base}],
    ]
    for i, entries in enumerate(crafted):
        doc = {
            "format": manifest.BACKUP_FORMAT, "version": 1, "name": f"evil-{i}", "volume": "vol1",
            "snapshot": "s", "created_at": "x", "block_size": 1 << 20, "entries": entries,
        }
        manifest.write_backup(store, doc)
        with pytest.raises(Damaged) as err:
            restore_backup(f"vfs://{tmp_path}/store?backup=evil-{i}&volume=vol1", str(tmp_path / f"r{i}"))
        assert "refusing" in str(err.value)
    assert (outside / "secret").read_text() == "host file\n"
    assert os.listdir(outside) == ["secret"]
