"""app/fs/loop.py and app/fs/filesystems.py on real loop devices over sparse files.

Every test cleans up its loop devices and mounts (the `disks` fixture), even
when it fails: a leaked loop device outlives the test run.
"""

import errno
import glob
import logging
import os
import re
import subprocess
import threading
import time

import pytest

from app.errors import Conflict, Damaged, InvalidInput, NotFound, Unavailable
from app.fs import command, filesystems, loop

pytestmark = pytest.mark.needs_root

MiB = 1 << 20
# The smallest image each file system accepts (mkfs.xfs refuses 300 MB and less).
SIZE = {"ext4": 64 * MiB, "xfs": 320 * MiB}


def ours(tmp_path):
    """Loop devices backed by a file under this test's tmp_path (the kernel's view)."""
    found = []
    for path in glob.glob("/sys/block/loop*/loop/backing_file"):
        try:
            with open(path) as f:
                backing = f.read().strip()
        except OSError:
            continue
        if backing.startswith(str(tmp_path) + "/"):
            found.append("/dev/" + path.split("/")[3])
    return found


def mounts_under(prefix):
    points = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split(" ")[4]
            if point.startswith(prefix + "/"):
                points.append(point)
    return points


class Disks:
    """Sparse images attached to loop devices; torn down by the fixture."""

    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.count = 0

    def image(self, size):
        self.count += 1
        path = self.dir / f"disk{self.count}.img"
        with open(path, "wb") as f:
            f.truncate(size)
        return path

    def attach(self, size, **kwargs):
        image = self.image(size)
        return image, loop.attach(str(image), **kwargs)

    def mountpoint(self):
        self.count += 1
        path = self.dir / f"mnt{self.count}"
        path.mkdir()
        return path


@pytest.fixture
def disks(tmp_path):
    try:
        yield Disks(tmp_path)
    finally:
        for point in reversed(mounts_under(str(tmp_path))):
            subprocess.run(["fsfreeze", "-u", point], capture_output=True, check=False)
            subprocess.run(["umount", "-l", point], check=False)
        for device in ours(tmp_path):
            subprocess.run(["losetup", "-d", device], check=False)
        for image in tmp_path.glob("*.img"):
            image.unlink()
    # a lazily unmounted file system lets go of its device when the kernel gets to it (seconds under load)
    deadline = time.monotonic() + 10
    while ours(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ours(tmp_path) == [], "a loop device was left attached"


def formatted(disks, fs):
    image, device = disks.attach(SIZE[fs])
    filesystems.make(device, fs)
    return image, device


def mounted(disks, fs, **kwargs):
    image, device = formatted(disks, fs)
    target = disks.mountpoint()
    filesystems.mount(device, str(target), fs, **kwargs)
    return image, device, target


# --- loop devices ---------------------------------------------------------------


def test_attach_shows_device_with_file_size_and_detach_leaves_none(disks, tmp_path):
    image, device = disks.attach(5 * MiB + 300)  # not a whole number of sectors
    assert re.fullmatch(r"/dev/loop\d+", device)
    assert loop.devices_of(str(image)) == [device]
    assert loop.attached()[device] == str(image)
    assert filesystems.size_of(device) == 5 * MiB  # the loop device ends at the last whole sector
    loop.detach(device)
    assert loop.devices_of(str(image)) == []
    assert ours(tmp_path) == []
    loop.detach(device)  # already detached: fine
    loop.detach("/dev/loop987654")  # never existed: fine


def test_devices_of_finds_the_file_through_a_symlink_and_forgets_a_deleted_one(disks, tmp_path):
    image, device = disks.attach(MiB)
    link = tmp_path / "link.img"
    link.symlink_to(image)
    assert loop.devices_of(str(link)) == [device]
    image.unlink()
    assert loop.devices_of(str(image)) == []
    assert loop.attached()[device] == f"{image} (deleted)"
    loop.detach(device)


def test_read_only_attach_refuses_writes(disks):
    _, device = disks.attach(MiB, read_only=True)
    with open(f"/sys/block/{os.path.basename(device)}/ro") as f:
        assert f.read().strip() == "1"
    with pytest.raises(OSError) as e:
        fd = os.open(device, os.O_WRONLY)
        try:
            os.write(fd, b"x" * 512)
        finally:
            os.close(fd)
    assert e.value.errno in (errno.EROFS, errno.EPERM, errno.EACCES)


@pytest.mark.parametrize(
    "make_path, error, words",
    [
        (lambda d: d / "missing.img", NotFound, "does not exist"),
        (lambda d: d, InvalidInput, "not a regular file"),
    ],
    ids=["missing", "directory"],
)
def test_attach_refuses_what_is_not_an_image(tmp_path, make_path, error, words):
    path = make_path(tmp_path)
    with pytest.raises(error, match=words) as e:
        loop.attach(str(path))
    assert str(path) in str(e.value)
    assert ours(tmp_path) == []


def test_a_failed_mkfs_is_a_clear_error_and_detach_leaves_no_device(disks, tmp_path):
    _image, device = disks.attach(64 * MiB)
    with pytest.raises(Unavailable) as e:
        filesystems.make(device, "xfs")  # too small for xfs
    assert device in str(e.value) and "300" in str(e.value)
    loop.detach(device)
    assert ours(tmp_path) == []


def test_detach_refuses_a_mounted_device_and_leaves_it_attached(disks):
    image, device, target = mounted(disks, "ext4")
    with pytest.raises(Conflict, match="unmount it"):
        loop.detach(device)
    assert loop.devices_of(str(image)) == [device]
    assert filesystems.mountpoint_of(device) == str(target)


def test_loop_calls_reject_a_name_that_is_not_a_loop_device():
    with pytest.raises(InvalidInput, match="not a loop device"):
        loop.detach("/dev/sda")
    with pytest.raises(NotFound, match="not an attached loop device"):
        loop.refresh_capacity("/dev/loop987654")


# --- probe and make -------------------------------------------------------------


@pytest.mark.parametrize("fs", filesystems.SUPPORTED)
def test_probe_tells_blank_from_each_file_system(disks, fs):
    _, device = disks.attach(SIZE[fs])
    assert filesystems.probe(device) is None
    filesystems.make(device, fs)
    assert filesystems.probe(device) == fs


def format_if_blank(device, fs):
    """What a block driver does: make a file system only where there is none."""
    found = filesystems.probe(device)
    if found is None:
        filesystems.make(device, fs)


def write_partition_table(device):
    subprocess.run(["sfdisk", "-q", device], input="label: dos\n,,L\n", text=True, capture_output=True, check=False)


def write_swap(device):
    subprocess.run(["mkswap", "-q", device], check=True)


def write_ext2(device):
    subprocess.run(["mkfs.ext2", "-q", "-F", device], check=True)


@pytest.mark.parametrize(
    "write, words",
    [(write_partition_table, "a dos partition table"), (write_swap, "of type swap"), (write_ext2, "of type ext2")],
    ids=["partition-table", "swap", "ext2"],
)
def test_probe_refuses_a_device_that_holds_something_else(disks, monkeypatch, write, words):
    _, device = disks.attach(64 * MiB)
    write(device)
    before = subprocess.run(["blkid", "-p", "-o", "export", device], capture_output=True, text=True, check=True).stdout
    made = []
    monkeypatch.setattr(filesystems, "make", lambda *a: made.append(a))
    with pytest.raises(Conflict) as e:
        format_if_blank(device, "ext4")
    assert words in str(e.value) and device in str(e.value) and "wipefs" in str(e.value)
    assert made == []
    assert subprocess.run(["blkid", "-p", "-o", "export", device], capture_output=True, text=True, check=True).stdout == before


def test_probe_of_a_missing_device_is_not_blank():
    with pytest.raises(NotFound):
        filesystems.probe("/dev/loop987654")


# --- mount ----------------------------------------------------------------------


def mount_options(target):
    with open("/proc/self/mountinfo") as info:
        for line in info:
            left, _, right = line.partition(" - ")
            if left.split(" ")[4] == str(target):
                return set(left.split(" ")[5].split(",")) | set(right.split()[2].split(","))
    raise AssertionError(f"{target} is not mounted")


@pytest.mark.parametrize("fs", filesystems.SUPPORTED)
def test_data_written_survives_unmount_and_read_only_mount_refuses_writes(disks, fs):
    from app.mounts import unmount

    _image, device, target = mounted(disks, fs)
    assert filesystems.mountpoint_of(device) == str(target)
    (target / "f").write_bytes(b"kept")
    unmount(target)
    assert filesystems.mountpoint_of(device) is None
    filesystems.mount(device, str(target), fs)
    assert (target / "f").read_bytes() == b"kept"
    unmount(target)

    filesystems.mount(device, str(target), fs, read_only=True)
    assert (target / "f").read_bytes() == b"kept"
    assert {"ro", "nodev", "nosuid", "noexec"} <= mount_options(target)
    with pytest.raises(OSError) as e:
        (target / "g").write_bytes(b"no")
    assert e.value.errno == errno.EROFS
    unmount(target)


def test_two_xfs_images_with_one_uuid_mount_at_once(disks):
    """A snapshot image is a copy with the volume's UUID; both must mount."""
    image, _device, target = mounted(disks, "xfs")
    (target / "f").write_bytes(b"x")
    with filesystems.frozen(str(target)):
        copy = disks.image(0)
        subprocess.run(["cp", "--sparse=always", str(image), str(copy)], check=True)
    copy_device = loop.attach(str(copy))
    copy_target = disks.mountpoint()
    filesystems.mount(copy_device, str(copy_target), "xfs")
    assert (copy_target / "f").read_bytes() == b"x"


def test_mount_of_a_blank_device_names_it_and_the_kernel_log(disks):
    _, device = disks.attach(64 * MiB)
    with pytest.raises(Unavailable) as e:
        filesystems.mount(device, str(disks.mountpoint()), "ext4")
    assert device in str(e.value) and "dmesg" in str(e.value)


# --- grow -----------------------------------------------------------------------


def has_capability(bit):
    with open("/proc/self/status") as status:
        effective = next(line for line in status if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) >> bit & 1)


CAP_SYS_RESOURCE = 24


@pytest.mark.parametrize("fs", filesystems.SUPPORTED)
def test_grow_after_the_image_grew_shows_the_new_size(disks, fs):
    image, device, target = mounted(disks, fs)
    before = os.statvfs(target)
    new_size = SIZE[fs] * 2
    with open(image, "r+b") as f:
        f.truncate(new_size)
    loop.refresh_capacity(device)
    assert filesystems.size_of(device) == new_size
    if fs == "ext4" and not has_capability(CAP_SYS_RESOURCE):
        # the kernel refuses to grow a mounted ext4 without it (some CI sandboxes drop it)
        with pytest.raises(Unavailable, match="needs the CAP_SYS_RESOURCE capability") as e:
            filesystems.grow(device, str(target), fs)
        assert device in str(e.value)
        return
    filesystems.grow(device, str(target), fs)
    after = os.statvfs(target)
    total = after.f_blocks * after.f_frsize
    assert total > before.f_blocks * before.f_frsize
    assert total > new_size * 0.85  # the rest is metadata and the journal


# --- freeze ---------------------------------------------------------------------


@pytest.mark.parametrize("fs", filesystems.SUPPORTED)
def test_frozen_holds_writers_until_the_block_exits(disks, fs):
    _, _, target = mounted(disks, fs)
    done = threading.Event()

    def writer():
        with open(target / "late", "wb") as f:
            f.write(b"after the thaw")
        done.set()

    with filesystems.frozen(str(target)):
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        assert not done.wait(0.5), "a write went through a frozen file system"
    assert done.wait(10)
    thread.join()
    assert (target / "late").read_bytes() == b"after the thaw"


def test_frozen_thaws_when_the_block_raises(disks):
    _, _, target = mounted(disks, "ext4")
    with pytest.raises(RuntimeError), filesystems.frozen(str(target)):
        raise RuntimeError("snapshot failed")
    (target / "f").write_bytes(b"writable again")  # would hang if still frozen
    with pytest.raises(Conflict, match="already frozen"), filesystems.frozen(str(target)), filesystems.frozen(str(target)):
        pass


def test_a_file_system_that_cannot_freeze_is_used_as_is_and_logged_once(tmp_path, caplog):
    point = tmp_path / "tmpfs"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], check=True)
    try:
        caplog.set_level(logging.INFO, logger="app.fs.filesystems")
        for _ in range(2):
            with filesystems.frozen(str(point)):
                (point / "f").write_bytes(b"not frozen")
        assert [r.message for r in caplog.records].count(next(iter(caplog.messages))) == 1
        assert "cannot be frozen" in caplog.messages[0]
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


# --- check ----------------------------------------------------------------------


def damage_ext4(device):
    """Overwrite the first block of group 0's inode table (the root directory's inode)."""
    dump = subprocess.run(["dumpe2fs", device], capture_output=True, text=True, check=True).stdout
    block_size = int(re.search(r"^Block size:\s+(\d+)", dump, re.MULTILINE).group(1))
    first = int(re.search(r"Inode table at (\d+)-", dump).group(1))
    return first * block_size, block_size


def damage_xfs(device):
    """Overwrite allocation group 1's headers (superblock copy, AGF, AGI, AGFL)."""
    out = subprocess.run(
        ["xfs_db", "-r", "-c", "sb 0", "-c", "p agblocks", "-c", "p blocksize", "-c", "p sectsize", device],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = dict(line.split(" = ") for line in out.splitlines())
    return int(values["agblocks"]) * int(values["blocksize"]), 4 * int(values["sectsize"])


@pytest.mark.parametrize("fs, region", [("ext4", damage_ext4), ("xfs", damage_xfs)])
def test_check_passes_a_fresh_file_system_and_refuses_a_damaged_one(disks, fs, region):
    _, device = formatted(disks, fs)
    filesystems.check(device, fs)
    offset, length = region(device)
    fd = os.open(device, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(range(251, 0, -1)) * (length // 251 + 1), offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    with pytest.raises(Damaged) as e:
        filesystems.check(device, fs)
    message = str(e.value)
    assert "damaged" in message and device in message
    finding = message.split("(", 1)[1]
    assert not finding.startswith(("Pass ", "Phase ", "no details")), message


def test_check_refuses_a_mounted_device(disks):
    _, device, _target = mounted(disks, "ext4")
    with pytest.raises(Conflict, match="unmounted"):
        filesystems.check(device, "ext4")


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: filesystems.check_name("btrfs"),
        lambda: filesystems.make("/dev/null", "btrfs"),
        lambda: filesystems.mount("/dev/null", "/mnt", "zfs"),
        lambda: filesystems.check("/dev/null", "ntfs"),
    ],
    ids=["check_name", "make", "mount", "check"],
)
def test_a_wrong_file_system_name_names_the_valid_ones(call):
    with pytest.raises(InvalidInput) as e:
        call()
    assert "ext4, xfs" in str(e.value)


def test_file_system_names_are_not_case_sensitive():
    assert filesystems.check_name(" EXT4 ") == "ext4"


def test_missing_device_and_missing_tool_and_stuck_tool_are_clear_errors(monkeypatch):
    with pytest.raises(NotFound, match="/dev/loop987654"):
        filesystems.size_of("/dev/loop987654")
    assert filesystems.mountpoint_of("/dev/loop987654") is None
    with pytest.raises(Unavailable, match=r"did not finish within 0\.2 s"):
        command.run(["sleep", "5"], subject="x", todo="y", timeout=0.2)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(Unavailable, match=r"blkid is not installed.*util-linux"):
        filesystems.probe("/dev/null")


def test_a_failing_tool_says_what_it_said_in_one_line(tmp_path):
    with pytest.raises(Unavailable) as e:
        command.run(["sh", "-c", "echo first >&2; echo second >&2; exit 3"], subject="/dev/x", todo="do this")
    assert str(e.value) == "sh on /dev/x failed: first; do this"


def test_size_of_reads_a_block_device(disks):
    _, device = disks.attach(3 * MiB)
    assert filesystems.size_of(device) == 3 * MiB


def test_mount_and_freeze_name_a_missing_mount_point(disks, tmp_path):
    _, device = formatted(disks, "ext4")
    with pytest.raises(NotFound, match="create it first"):
        filesystems.mount(device, str(tmp_path / "nowhere"), "ext4")
    with pytest.raises(NotFound, match="is the volume mounted"), filesystems.frozen(str(tmp_path / "nowhere")):
        pass
