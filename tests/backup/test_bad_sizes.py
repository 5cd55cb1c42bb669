"""A manifest entry with a size no file can have fails the restore cleanly.

Before, `ftruncate` failing (-1, 2**62, a size the target refuses with
EFBIG) leaked the file's descriptor: the restore mount could not be
unmounted, the error became "busy", and the volume stayed listed and
mounted until a restart. Sizes outside the format's range now fail before
anything is created, and a size the target refuses closes what it opened.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from app.backup import restore_backup
from app.errors import ConvoyError
from tests.backup.test_hostile_restore import (
    assert_restore_left_nothing,
    e_file,
    names_entry,
    our_backup,
)
from tests.daemon_harness import Daemon

FSIZE_LIMIT = 1 << 30  # EFBIG beyond 1 GiB, whatever file system the test runs on

# (size, what the error must say)
BAD_SIZES = {
    "negative": (-1, "greater than or equal to 0"),
    "beyond off_t": (2**63, "less than or equal to"),
    "2**62, refused by the target (EFBIG)": (2**62, "more than the file system"),
    "2**40, refused by the target (EFBIG)": (2**40, "more than the file system"),
    "a string": ("12", "valid integer"),
    "a boolean": (True, "valid integer"),
    "missing": (None, "size"),
}


def bad_file(size) -> dict:
    entry = e_file("big")
    if size is None:
        del entry["size"]
    else:
        entry["size"] = size
    if not isinstance(size, int) or size < 6:
        entry["blocks"] = []
    return entry


@pytest.fixture
def fsize_limit():
    """Files of this process may not grow beyond FSIZE_LIMIT (Python ignores SIGXFSZ: EFBIG)."""
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, old[1]))
    yield
    resource.setrlimit(resource.RLIMIT_FSIZE, old)


def open_under(directory: Path) -> list[str]:
    """What this process still has open inside `directory`."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if where == str(directory) or where.startswith(str(directory) + "/"):
            found.append(where)
    return found


@pytest.mark.parametrize("case", list(BAD_SIZES), ids=list(BAD_SIZES))
def test_a_bad_size_fails_the_restore_and_closes_everything(tmp_path, fsize_limit, case):
    size, said = BAD_SIZES[case]
    url = our_backup(tmp_path / "store", [e_file("small"), bad_file(size)])
    target = tmp_path / "target"
    with pytest.raises(ConvoyError) as err:
        restore_backup(url, str(target))
    assert names_entry(str(err.value), "big", 2) and said in str(err.value), str(err.value)
    assert open_under(target) == []
    in_range = isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 2**63
    if not in_range:  # fails before anything is created
        assert not target.exists() or os.listdir(target) == []


class SizeLimitedDaemon(Daemon):
    """A daemon whose files may not grow beyond FSIZE_LIMIT: the target refuses bigger ones."""

    def args(self) -> list[str]:
        return ["prlimit", f"--fsize={FSIZE_LIMIT}", "--", *super().args()]


@pytest.fixture
def limited_daemon(tmp_path):
    daemon = SizeLimitedDaemon(tmp_path / "daemon").start()
    yield daemon
    daemon.stop()
    daemon.cleanup_mounts()


@pytest.mark.needs_root
@pytest.mark.parametrize("case", list(BAD_SIZES), ids=list(BAD_SIZES))
def test_a_bad_size_through_the_cli_leaves_no_stuck_volume(limited_daemon, tmp_path, case):
    size, said = BAD_SIZES[case]
    url = our_backup(tmp_path / "store", [e_file("small"), bad_file(size)])
    result = limited_daemon.cli("create", "victim", "--backup", url)
    assert result.returncode != 0
    assert names_entry(result.stderr, "big", 2) and said in result.stderr, result.stderr
    assert "busy" not in result.stderr and "internal" not in result.stderr
    assert_restore_left_nothing(limited_daemon, "victim")
    # the name is free again
    limited_daemon.cli("create", "victim", check=True)


def assert_refused_for_room(restore, small: Path, named: str) -> None:
    """`restore(small)` onto a 1 MiB tmpfs at `small` fails saying the target is full and
    naming `named`, and leaves nothing open there: the file system unmounts at once."""
    import subprocess

    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        with pytest.raises(ConvoyError) as err:
            restore(small)
        assert "full" in str(err.value) and named in str(err.value), str(err.value)
        assert open_under(small) == []
    finally:
        unmounted = subprocess.run(["umount", str(small)], capture_output=True, text=True, check=False)
    assert unmounted.returncode == 0, unmounted.stderr


@pytest.mark.needs_root
@pytest.mark.parametrize("kind", ["ours", "convoy"])
def test_a_full_target_fails_the_restore_clearly_and_closes_everything(tmp_path, kind):
    """A restore onto a file system without room says so, names the file, and
    leaves nothing open: the file system unmounts at once (no "busy")."""
    from app.backup import SnapshotSource, create_backup
    from tests.backup.test_hostile_restore import convoy_backup, t_file

    data = os.urandom(4 << 20)  # incompressible, bigger than the target
    if kind == "ours":
        source = tmp_path / "source"
        source.mkdir()
        (source / "big.bin").write_bytes(data)
        url = create_backup(f"vfs://{tmp_path / 'store'}", "vol1", SnapshotSource("s", str(source)))["url"]
    else:
        url = convoy_backup(tmp_path / "store", [t_file("big.bin", data)])
    assert_refused_for_room(lambda small: restore_backup(url, str(small / "target")), tmp_path / "small", "big.bin")


@pytest.mark.needs_root
def test_an_image_restore_onto_a_full_target_fails_clearly_and_closes_everything(tmp_path):
    """A new image's data ranges are allocated before its blocks are written: a target
    without room fails with "full", naming the image, and leaves nothing open."""
    from app.backup.engine import create_image_backup, restore_image

    image = tmp_path / "vol.img"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
        f.seek(8 << 20)
        f.write(os.urandom(4 << 20))  # 4 MiB of data in a sparse 64 MiB image
    url = create_image_backup(f"vfs://{tmp_path / 'store'}", "vol1", "snap1", str(image))["url"]
    assert_refused_for_room(lambda small: restore_image(url, str(small / "restored.img")), tmp_path / "small", "restored.img")
    # on a file system with room the same restore is whole and stays sparse
    restored = tmp_path / "restored.img"
    restore_image(url, str(restored))
    assert restored.read_bytes() == image.read_bytes()
    assert os.stat(restored).st_blocks * 512 <= 5 << 20
