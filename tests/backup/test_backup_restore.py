"""Back up a directory tree and restore it: what a user checks afterwards."""

import os

import pytest

from app.backup import SnapshotSource, create_backup, inspect_backup, list_backups, restore_backup, verify_backup
from app.backup.urls import parse_backup_url
from app.errors import Conflict, NotFound
from app.storage.vfs_snapshot import snapshot_directory
from tests.backup.treecheck import describe, make_sample_tree


def test_restore_reproduces_tree_bytes_and_metadata(dest, tmp_path):
    url, endpoint = dest
    vol = make_sample_tree(tmp_path / "vol")
    result = create_backup(url, "vol1", SnapshotSource("snap1", str(vol)), s3_endpoint=endpoint)
    assert result["url"].startswith(url + "?backup=backup-") and result["url"].endswith("&volume=vol1")

    restored = tmp_path / "restored"
    # the URL as Convoy printed them works too
    restore_backup(result["url"].replace("&", "\\u0026"), str(restored), s3_endpoint=endpoint)
    assert describe(restored) == describe(vol)
    # sparse regions stay holes: the 64 MiB image holds ~200 KB of data
    assert os.stat(restored / "sparse.img").st_blocks * 512 < 2 << 20
    assert os.readlink(restored / "dangling") == "/nonexistent/target"
    assert os.stat(restored / "hardlink.txt").st_ino == os.stat(restored / "docs" / "hello.txt").st_ino

    assert verify_backup(result["url"], s3_endpoint=endpoint)["ok"]
    info = inspect_backup(result["url"], s3_endpoint=endpoint)
    assert (info["volume"], info["snapshot"], info["name"]) == ("vol1", "snap1", result["name"])
    assert [b["url"] for b in list_backups(url, s3_endpoint=endpoint)] == [result["url"]]


def test_sparse_regions_are_neither_read_nor_stored(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    with open(vol / "disk.img", "wb") as f:
        f.truncate(1 << 30)  # 1 GiB, one 4 KiB island
        f.seek(123 << 20)
        f.write(b"z" * 4096)
    result = create_backup(f"vfs://{tmp_path}/store", "sparsevol", SnapshotSource("s", str(vol)))
    assert result["stats"]["read_bytes"] == 4096
    stored = sum(f.stat().st_size for f in (tmp_path / "store").rglob("*") if f.is_file() and "blocks" in f.parts)
    assert stored < 8192
    restore_backup(result["url"], str(tmp_path / "r"))
    assert describe(tmp_path / "r") == describe(vol)


def test_incremental_reads_only_changed_files_and_dedups_across_volumes(tmp_path):
    store = f"vfs://{tmp_path}/store"
    vol = make_sample_tree(tmp_path / "vol")
    first = create_backup(store, "vol1", SnapshotSource("s1", str(vol)))
    assert first["stats"]["new_blocks"] > 0

    # unchanged: nothing read, nothing uploaded
    again = create_backup(store, "vol1", SnapshotSource("s2", str(vol)))
    assert again["stats"]["read_bytes"] == 0 and again["stats"]["new_blocks"] == 0
    assert again["base_backup"] == first["name"]

    # one file changed: only it is read
    (vol / "docs" / "hello.txt").write_text("changed\n")
    third = create_backup(store, "vol1", SnapshotSource("s3", str(vol)))
    assert third["stats"]["read_bytes"] == len("changed\n")
    assert third["stats"]["new_blocks"] == 1

    # the same data in another volume is not stored again
    other = create_backup(store, "vol2", SnapshotSource("o1", str(vol)))
    assert other["stats"]["new_blocks"] == 0

    # each backup restores alone, to what the volume held then
    restore_backup(first["url"], str(tmp_path / "r1"))
    restore_backup(third["url"], str(tmp_path / "r3"))
    assert (tmp_path / "r1" / "docs" / "hello.txt").read_text() == "hello convoy\n"
    assert describe(tmp_path / "r3") == describe(vol)


def test_fiemap_reads_only_changed_ranges_of_a_reflinked_file(xfs_dir, tmp_path):
    vol = xfs_dir / "vol"
    vol.mkdir()
    size = 64 << 20
    with open(vol / "disk.img", "wb") as f:
        f.write(os.urandom(size))
    assert snapshot_directory(str(vol), str(xfs_dir / "snap1")) == "reflink"
    store = f"vfs://{tmp_path}/store"
    first = create_backup(store, "vol", SnapshotSource("snap1", str(xfs_dir / "snap1")))
    assert first["stats"]["read_bytes"] == size

    with open(vol / "disk.img", "r+b") as f:  # two small writes, 40 MiB apart
        f.seek(3 << 20)
        f.write(b"a" * 10)
        f.seek(43 << 20)
        f.write(b"b" * 10)
    assert snapshot_directory(str(vol), str(xfs_dir / "snap2")) == "reflink"
    second = create_backup(
        store,
        "vol",
        SnapshotSource("snap2", str(xfs_dir / "snap2")),
        previous_snapshot=SnapshotSource("snap1", str(xfs_dir / "snap1")),
    )
    assert second["stats"]["read_bytes"] == 2 << 20  # the two 1 MiB blocks written to
    assert second["stats"]["new_blocks"] == 2
    restore_backup(second["url"], str(tmp_path / "r"))
    assert describe(tmp_path / "r", mtimes=False)["disk.img"] == describe(vol, mtimes=False)["disk.img"]


def test_restore_refuses_a_non_empty_target_and_unknown_backups(tmp_path):
    vol = make_sample_tree(tmp_path / "vol")
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", str(vol)))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(Conflict) as err:
        restore_backup(result["url"], str(tmp_path / "busy"))
    assert "not empty" in str(err.value)
    with pytest.raises(NotFound) as err:
        restore_backup(f"vfs://{tmp_path}/store?backup=backup-nope&volume=vol1", str(tmp_path / "r"))
    assert "convoy backup list" in str(err.value)


def test_backup_url_round_trips(tmp_path):
    vol = make_sample_tree(tmp_path / "vol")
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", str(vol)), backup_name="nightly-1")
    assert str(parse_backup_url(result["url"])) == result["url"] == f"vfs://{tmp_path}/store?backup=nightly-1&volume=vol1"
    with pytest.raises(Conflict):
        create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", str(vol)), backup_name="nightly-1")


def test_restore_and_verify_from_a_read_only_store(tmp_path):
    """Another host may mount the store read-only (or hold read-only S3 credentials)."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root for a read-only bind mount")
    vol = make_sample_tree(tmp_path / "vol")
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", str(vol)))
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(tmp_path / "store"), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        url = result["url"].replace(f"{tmp_path}/store", str(ro))
        assert verify_backup(url)["ok"]
        restore_backup(url, str(tmp_path / "r"))
        assert describe(tmp_path / "r") == describe(vol)
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_odd_file_names_survive(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    names = [b"with space", b"new\nline", b"latin1-\xe9\xff", "ünïcødé-名前".encode(), b"-dash", b".hidden"]
    for name in names:
        with open(os.path.join(os.fsencode(vol), name), "wb") as f:
            f.write(name * 3)
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", str(vol)))
    restore_backup(result["url"], str(tmp_path / "r"))
    assert sorted(os.listdir(os.fsencode(tmp_path / "r"))) == sorted(names)
    assert describe(tmp_path / "r") == describe(vol)


def test_snapshot_and_restore_keep_extended_attributes(xfs_dir, tmp_path):
    vol = make_sample_tree(xfs_dir / "vol")
    assert snapshot_directory(str(vol), str(xfs_dir / "snap")) == "reflink"
    assert describe(xfs_dir / "snap") == describe(vol)
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("snap", str(xfs_dir / "snap")))
    restore_backup(result["url"], str(tmp_path / "r"))
    assert os.getxattr(tmp_path / "r" / "docs" / "hello.txt", "user.comment") == b"kept with the file"
    assert os.getxattr(tmp_path / "r" / "owned", "security.capability") == os.getxattr(vol / "owned", "security.capability")
    assert describe(tmp_path / "r") == describe(vol)


def test_restore_is_flushed_to_disk_before_it_returns(tmp_path, monkeypatch):
    """The daemon hands the volume out when the restore returns: by then the whole
    tree, data and metadata, must have been flushed (one syncfs of its file system)."""
    from app.backup import restore_target as restore_module  # where make_durable lives

    vol = make_sample_tree(tmp_path / "vol")
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s", str(vol)))
    restored = tmp_path / "restored"
    flushed = []
    real = restore_module.sync_filesystem

    def sync(path):
        flushed.append((path, describe(restored)))  # everything is in place when it is flushed
        real(path)

    monkeypatch.setattr(restore_module, "sync_filesystem", sync)
    restore_backup(result["url"], str(restored))
    assert flushed == [(str(restored), describe(vol))]


def test_lookahead_warms_a_bounded_distance_ahead_and_stops():
    """The look-ahead of a restore never runs more than `ahead` blocks past the
    blocks handed to the workers (memory and kernel caches stay bounded)."""
    import threading
    import time

    from app.backup.restore import Lookahead

    class Store:
        warms = True

        def __init__(self):
            self.keys = []
            self.lock = threading.Lock()

        def warm(self, key):
            with self.lock:
                self.keys.append(key)

    def settle(store, n):
        deadline = time.monotonic() + 5
        while len(store.keys) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        return len(store.keys)

    store = Store()
    digests = [f"{i:064x}" for i in range(1000)]
    look = Lookahead(store, iter(digests), ahead=8, threads=2)
    try:
        assert settle(store, 8) == 8
        for _ in range(5):
            look.advance()
        assert settle(store, 13) == 13
    finally:
        look.close()
    assert len(store.keys) == 13
    assert sorted(k.rsplit("/", 1)[1] for k in store.keys) == digests[:13]
