"""Any backup restores into any back-end: a tree backup into a block volume and an image backup into a directory.

One daemon with both back-ends (images on XFS, so their snapshots are
reflinks); every restore is compared with the original, byte for byte and
with its metadata.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.backup.treecheck import describe, make_sample_tree
from tests.convoy_dm_fixture import assert_restored, copied_store
from tests.daemon_harness import cli_json

pytestmark = pytest.mark.needs_root




@pytest.fixture
def both(make_daemon, xfs_dir):
    daemon = make_daemon("--drivers", "vfs", "--drivers", "image", "--driver-opts", f"image.path={xfs_dir / 'images'}")
    yield daemon
    daemon.stop()
    daemon.cleanup_mounts()
    from tests.drivers.backends import loop_devices_of

    for device in loop_devices_of(xfs_dir):
        subprocess.run(["losetup", "-d", device], check=False)


def backup_of(daemon, volume: str, store: str) -> str:
    snapshot = daemon.cli("snapshot", "create", volume, check=True).stdout.strip()
    return daemon.cli("backup", "create", snapshot, "--dest", store, check=True).stdout.strip()


def tree_of(daemon, volume: str) -> dict:
    mountpoint = daemon.docker_ok("Mount", {"Name": volume, "ID": "look"})["Mountpoint"]
    try:
        return describe(mountpoint)
    finally:
        daemon.docker_ok("Unmount", {"Name": volume, "ID": "look"})


def test_vfs_to_image_to_vfs_keeps_every_byte_and_attribute(both, tmp_path):
    store = f"vfs://{tmp_path / 'store'}"
    both.cli("create", "original", check=True)
    source = both.root / "vfs" / "original"
    source.rmdir()
    make_sample_tree(source)
    expected = describe(source)

    tree_backup = backup_of(both, "original", store)
    assert cli_json(both, "backup", "inspect", tree_backup)["source"] == "tree"
    both.cli("create", "as-image", "--backup", tree_backup, "--driver", "image", "--size", "256M", check=True)
    assert cli_json(both, "inspect", "as-image")["driver"] == "image"
    assert tree_of(both, "as-image") == expected

    image_backup = backup_of(both, "as-image", store)
    assert cli_json(both, "backup", "inspect", image_backup)["source"] == "image"
    both.cli("create", "back-to-vfs", "--backup", image_backup, "--driver", "vfs", check=True)
    assert describe(both.root / "vfs" / "back-to-vfs") == expected

    # and through Docker: docker volume create -o backup=URL -o driver=...
    both.docker_ok("Create", {"Name": "docker-image", "Opts": {"backup": tree_backup, "driver": "image", "size": "256M"}})
    assert tree_of(both, "docker-image") == expected
    both.docker_ok("Create", {"Name": "docker-vfs", "Opts": {"backup": image_backup, "driver": "vfs"}})
    assert tree_of(both, "docker-vfs") == expected


def test_an_image_backup_restores_into_a_bigger_block_volume_with_its_file_system_grown(both, tmp_path):
    store = f"vfs://{tmp_path / 'store'}"
    both.cli("create", "small", "--driver", "image", "--size", "64M", check=True)
    mountpoint = both.docker_ok("Mount", {"Name": "small", "ID": "c1"})["Mountpoint"]
    Path(mountpoint, "data").write_bytes(os.urandom(1 << 20))
    expected = describe(mountpoint)
    both.docker_ok("Unmount", {"Name": "small", "ID": "c1"})
    url = backup_of(both, "small", store)

    too_small = both.cli("create", "smaller", "--backup", url, "--driver", "image", "--size", "32M")
    assert too_small.returncode != 0 and "smaller than the backed-up volume (64M)" in too_small.stderr, too_small.stderr
    assert both.cli("inspect", "smaller").returncode != 0, "nothing is created for a refused restore"

    both.cli("create", "bigger", "--backup", url, "--driver", "image", "--size", "512M", check=True)
    mountpoint = both.docker_ok("Mount", {"Name": "bigger", "ID": "c1"})["Mountpoint"]
    try:
        assert describe(mountpoint) == expected
        fs = os.statvfs(mountpoint)
        assert fs.f_blocks * fs.f_frsize > 400 << 20, "the file system fills the bigger volume"
    finally:
        both.docker_ok("Unmount", {"Name": "bigger", "ID": "c1"})


def test_a_damaged_image_backup_is_refused_before_any_mount_parses_it(both, tmp_path):
    """The image's file system comes from the store: it is checked before the kernel mounts it."""
    store_dir = tmp_path / "store"
    both.cli("create", "src", "--driver", "image", "--size", "64M", check=True)
    mountpoint = both.docker_ok("Mount", {"Name": "src", "ID": "c1"})["Mountpoint"]
    Path(mountpoint, "f").write_text("x")
    both.docker_ok("Unmount", {"Name": "src", "ID": "c1"})
    url = backup_of(both, "src", f"vfs://{store_dir}")
    # the same bytes, but with the first 64 KiB (ext4's superblock and group descriptors) zeroed:
    # restore it as an image, damage it, back it up again as another volume's image
    both.cli("create", "copy", "--backup", url, "--driver", "image", check=True)
    image = Path(cli_json(both, "inspect", "copy")["backend"]["image"])
    with open(image, "r+b") as f:
        f.seek(1024)
        f.write(b"\xff" * 4096)
    damaged = backup_of(both, "copy", f"vfs://{store_dir}")
    for driver in ("vfs", "image"):
        result = both.cli("create", f"into-{driver}", "--backup", damaged, "--driver", driver)
        assert result.returncode != 0
        assert "damaged" in result.stderr or "no file system" in result.stderr, result.stderr
        assert both.cli("inspect", f"into-{driver}").returncode != 0, "a failed restore leaves no volume"
    assert not (both.root / "restore-scratch" / "into-vfs").exists()
    assert sorted(os.listdir(image.parent)) == [".snapshots", "copy.img", "src.img"], "no image is left of the failed restore"


@pytest.mark.parametrize("driver", ["image", "vfs"])
def test_a_convoy_devicemapper_backup_restores_into_an_image_or_a_directory_volume(both, tmp_path, driver):
    """rancher/convoy 0.5.2's device-mapper backups (deltablock) on any back-end, not only to an image file."""
    expected = copied_store(tmp_path / "convoy-store")
    for which in ("backup1", "backup2"):
        url = expected[f"{which}_url_printed"]
        name = f"{which}-{driver}"
        both.cli("create", name, "--backup", url, "--driver", driver, check=True)
        mountpoint = Path(both.docker_ok("Mount", {"Name": name, "ID": "c1"})["Mountpoint"])
        try:
            assert_restored(mountpoint, expected, which)
        finally:
            both.docker_ok("Unmount", {"Name": name, "ID": "c1"})
