"""What the image back-end gives that VFS cannot: a hard size limit, growth, and no leaks across crashes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.daemon_harness import mounted_points
from tests.drivers.backends import loop_devices_of

pytestmark = pytest.mark.needs_root
MiB = 1 << 20


@pytest.fixture
def images(make_daemon, xfs_dir):
    daemon = make_daemon("--drivers", "image", "--driver-opts", f"image.path={xfs_dir / 'images'}")
    yield daemon
    daemon.stop()
    daemon.cleanup_mounts()
    for device in loop_devices_of(xfs_dir):
        subprocess.run(["losetup", "-d", device], check=False)


def write_mib(path: Path, mib: int) -> int:
    """Write up to `mib` MiB to `path`; the MiB written before the file system was full."""
    chunk = os.urandom(MiB)
    written = 0
    with open(path, "wb") as f:
        try:
            for _ in range(mib):
                f.write(chunk)
                f.flush()
                written += 1
            os.fsync(f.fileno())
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
            return written
    return written


def size_of(mountpoint: str) -> int:
    fs = os.statvfs(mountpoint)
    return fs.f_blocks * fs.f_frsize


@pytest.mark.parametrize("fs, size, grown", [("ext4", "100M", "300M"), ("xfs", "300M", "600M")])
def test_size_is_a_hard_limit_and_a_resize_while_mounted_lifts_it(images, fs, size, grown):
    images.docker_ok("Create", {"Name": "capped", "Opts": {"driver": "image", "size": size, "fs": fs}})
    mountpoint = images.docker_ok("Mount", {"Name": "capped", "ID": "c1"})["Mountpoint"]
    limit = int(size[:-1])
    assert write_mib(Path(mountpoint, "big"), limit + 100) < limit, "writing past the size fails with ENOSPC"
    os.unlink(Path(mountpoint, "big"))

    result = images.cli("resize", "capped", grown)
    assert result.returncode == 0, result.stderr
    assert json.loads(images.cli("inspect", "capped", "--json").stdout)["size"] == int(grown[:-1]) * MiB
    online = fs == "xfs" or "CAP_SYS_RESOURCE" not in result.stderr
    if not online:  # this host may not grow a mounted ext4: it says so, and the next mount grows it
        assert "grows when the volume is next mounted" in result.stderr, result.stderr
        images.docker_ok("Unmount", {"Name": "capped", "ID": "c1"})
        mountpoint = images.docker_ok("Mount", {"Name": "capped", "ID": "c2"})["Mountpoint"]
    assert size_of(mountpoint) > (limit + 100) * MiB
    assert write_mib(Path(mountpoint, "big"), limit + 100) == limit + 100, "the grown volume takes the write"


def test_a_volume_only_grows_and_vfs_says_it_cannot_resize(make_daemon, images):
    images.cli("create", "grows", "--size", "64M", check=True)
    shrink = images.cli("resize", "grows", "32M")
    assert shrink.returncode != 0 and "it can only grow" in shrink.stderr, shrink.stderr
    vfs = make_daemon(name="vfs-host")
    vfs.cli("create", "dir", check=True)
    refused = vfs.cli("resize", "dir", "1G")
    assert refused.returncode != 0 and "cannot resize volumes" in refused.stderr, refused.stderr
    tiny = images.cli("create", "tiny", "--size", "100M", "-o", "fs=xfs")
    assert tiny.returncode != 0 and "too small for an xfs volume: give at least 300M" in tiny.stderr, tiny.stderr


def test_a_resize_while_unmounted_is_seen_at_the_next_mount(images):
    images.cli("create", "later", "--size", "64M", check=True)
    mountpoint = images.docker_ok("Mount", {"Name": "later", "ID": "c1"})["Mountpoint"]
    Path(mountpoint, "keep").write_text("kept across the resize")
    images.docker_ok("Unmount", {"Name": "later", "ID": "c1"})
    images.cli("resize", "later", "256M", check=True)
    mountpoint = images.docker_ok("Mount", {"Name": "later", "ID": "c1"})["Mountpoint"]
    assert size_of(mountpoint) > 200 * MiB
    assert Path(mountpoint, "keep").read_text() == "kept across the resize"
    images.docker_ok("Unmount", {"Name": "later", "ID": "c1"})


def test_twenty_kill_9_cycles_leak_no_loop_device_or_mount(images, xfs_dir):
    # the daemon's images live in xfs_dir: loop devices of other files are other programs' (they come and go)
    before = set(loop_devices_of(xfs_dir))
    for name in ("one", "two", "idle"):
        images.cli("create", name, "--size", "64M", check=True)
    mountpoints = {name: images.docker_ok("Mount", {"Name": name, "ID": "c1"})["Mountpoint"] for name in ("one", "two")}
    images.docker_ok("Mount", {"Name": "idle", "ID": "c1"})
    images.docker_ok("Unmount", {"Name": "idle", "ID": "c1"})
    for _ in range(20):
        images.kill9()
        images.start()
        images.wait_ready()
        attached = sorted(Path(f).name for f in loop_devices_of(xfs_dir).values())
        assert attached == ["one.img", "two.img"], attached
        with open("/proc/self/mountinfo") as info:
            targets = [line.split(" ")[4] for line in info]
        for mountpoint in mountpoints.values():
            assert targets.count(mountpoint) == 1
    for name in ("one", "two"):
        images.docker_ok("Unmount", {"Name": name, "ID": "c1"})
        assert mountpoints[name] not in mounted_points()
    for name in ("one", "two", "idle"):
        images.cli("delete", name, check=True)
    assert set(loop_devices_of(xfs_dir)) == before


def test_a_device_also_mounted_by_hand_is_released_by_docker_and_left_attached(images, xfs_dir, tmp_path):
    images.cli("create", "shared-by-hand", "--size", "64M", check=True)
    images.docker_ok("Mount", {"Name": "shared-by-hand", "ID": "c1"})
    (device,) = loop_devices_of(xfs_dir)
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    subprocess.run(["mount", device, str(by_hand)], check=True)
    try:
        images.docker_ok("Unmount", {"Name": "shared-by-hand", "ID": "c1"})  # Docker's unmount succeeds
        assert list(loop_devices_of(xfs_dir)) == [device], "the hand mount keeps its device"
        assert str(by_hand) in mounted_points()
    finally:
        subprocess.run(["umount", str(by_hand)], check=True)
    images.cli("delete", "shared-by-hand", check=True)
    assert loop_devices_of(xfs_dir) == {}
