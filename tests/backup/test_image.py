"""Image backups: block devices and image files, sparse and incremental by changed ranges."""

import hashlib
import os
import subprocess

import pytest

from app.backup import SnapshotSource, create_backup, create_image_backup, restore_backup, restore_image, verify_backup
from app.errors import Conflict
from app.fs.fiemap import changed_ranges as changed_ranges_by_fiemap
from app.storage.vfs_snapshot import snapshot_directory

MIB = 1 << 20


def sha(path, size=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = size if size is not None else os.path.getsize(path)
        while left:
            chunk = f.read(min(left, 8 * MIB))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def write_at(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_image_file_backup_incremental_by_fiemap_and_restore(xfs_dir, tmp_path):
    vol = xfs_dir / "vol"
    vol.mkdir()
    img = vol / "disk.img"
    with open(img, "wb") as f:  # 256 MiB image with 24 MiB of data in three places
        f.truncate(256 * MIB)
    write_at(img, 0, os.urandom(8 * MIB))
    write_at(img, 100 * MIB, os.urandom(8 * MIB))
    write_at(img, 250 * MIB, os.urandom(6 * MIB))
    dest = f"vfs://{tmp_path}/store"
    snapshot_directory(str(vol), str(xfs_dir / "s1"))
    first = create_image_backup(dest, "blockvol", "s1", str(xfs_dir / "s1" / "disk.img"))
    assert first["stats"]["read_bytes"] == 22 * MIB  # holes are not read
    assert first["source"] == "image"

    write_at(img, 101 * MIB + 5, b"changed")
    write_at(img, 200 * MIB, os.urandom(MIB))  # new data in a hole
    snapshot_directory(str(vol), str(xfs_dir / "s2"))
    changed = changed_ranges_by_fiemap(str(xfs_dir / "s1" / "disk.img"), str(xfs_dir / "s2" / "disk.img"))
    second = create_image_backup(
        dest, "blockvol", "s2", str(xfs_dir / "s2" / "disk.img"), changed_ranges=changed, previous_snapshot="s1"
    )
    assert second["stats"]["read_bytes"] == 2 * MIB
    assert second["stats"]["new_blocks"] == 2

    for result, source in ((first, xfs_dir / "s1" / "disk.img"), (second, img)):
        assert verify_backup(result["url"])["ok"]
        out = tmp_path / f"{result['name']}.img"
        restore_image(result["url"], str(out))
        assert sha(out) == sha(source)
        assert os.stat(out).st_blocks * 512 < 40 * MIB  # restored sparse

    with pytest.raises(Conflict):
        restore_backup(second["url"], str(tmp_path / "dir"))


def test_image_restore_onto_a_block_device(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for a loop device")
    src = tmp_path / "src.img"
    with open(src, "wb") as f:
        f.truncate(32 * MIB)
    write_at(src, 3 * MIB + 512, os.urandom(2 * MIB + 100))
    result = create_image_backup(f"vfs://{tmp_path}/store", "blockvol", "snap", str(src))

    backing = tmp_path / "dev.img"
    with open(backing, "wb") as f:
        f.truncate(32 * MIB)
    dev = subprocess.run(["losetup", "-f", "--show", str(backing)], check=True, capture_output=True, text=True).stdout.strip()
    try:
        restore_image(result["url"], dev)
        assert sha(dev, 32 * MIB) == sha(src)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_directory_backup_does_not_restore_as_an_image(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("x")
    result = create_backup(f"vfs://{tmp_path}/store", "dirvol", SnapshotSource("s", str(vol)))
    with pytest.raises(Conflict):
        restore_image(result["url"], str(tmp_path / "x.img"))
