"""Links planted in `vfs.path` never lead the daemon to the host's files.

Two ways in: a container swaps a directory of its volume for a link while a
snapshot copies it; another host sharing `vfs.path` (NFS) plants a link where
a volume, `.convoy` or a snapshot directory would be. Each test keeps a
"canary" directory on the host, outside every convoy path, and checks that it
is neither copied, nor mounted, nor written, nor deleted.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.daemon_harness import CONVOY, REPO, mounted_points
from tests.open_gate import OpenGate

pytestmark = pytest.mark.needs_root

SECRET = "HOST SECRET: must never reach a volume or a snapshot"


@pytest.fixture
def canary(tmp_path):
    """A host directory with files that convoy must never touch."""
    path = tmp_path / "host-canary"
    path.mkdir()
    for name in ("a", "b", "passwd"):
        (path / name).write_text(SECRET)
    (path / "old.partial").mkdir()
    (path / "old.partial" / "kept").write_text(SECRET)
    return path


def canary_state(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_text() if p.is_file() else "<dir>" for p in sorted(path.rglob("*"))}


def swap_for_link(directory: Path, target: Path) -> None:
    """What a container (or another host) can do at any moment."""
    directory.rename(directory.with_name(directory.name + ".moved"))
    directory.symlink_to(target)


# planted by another host on shared storage


def test_create_refuses_a_link_planted_where_the_volume_would_be(daemon, canary):
    before = canary_state(canary)
    (daemon.root / "vfs" / "vol1").symlink_to(canary)
    status, data = daemon.docker("Create", {"Name": "vol1"})
    assert status != 200 and "never follows links in vfs.path" in data["Err"], data
    result = daemon.cli("create", "vol2x")
    assert result.returncode == 0  # other names are unaffected
    assert [v["Name"] for v in daemon.docker_ok("List")["Volumes"]] == ["vol2x"]
    assert canary_state(canary) == before


@pytest.mark.parametrize("planted", [(".convoy",), (".convoy", "volumes")], ids=["convoy-dir", "records-dir"])
def test_create_refuses_a_planted_records_directory(make_daemon, canary, planted):
    daemon = make_daemon(start=False)
    vfs = daemon.root / "vfs"
    vfs.mkdir(parents=True)
    link = vfs.joinpath(*planted)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(canary)
    before = canary_state(canary)
    daemon.start()
    status, data = daemon.docker("Create", {"Name": "vol1"})
    assert status != 200 and "never follows links in vfs.path" in data["Err"], data
    assert not (vfs / "vol1").exists(), "a refused create leaves nothing"
    daemon.docker_ok("List")
    assert canary_state(canary) == before


def test_mount_never_bind_mounts_a_planted_link(daemon, canary):
    daemon.docker_ok("Create", {"Name": "vol1"})
    swap_for_link(daemon.root / "vfs" / "vol1", canary)
    status, data = daemon.docker("Mount", {"Name": "vol1", "ID": "c1"})
    assert status != 200 and "never follows links in vfs.path" in data["Err"], data
    target = daemon.mount_root / "vol1"
    assert str(target) not in mounted_points()
    assert not (target / "passwd").exists()


def test_delete_unlinks_a_planted_link_and_keeps_what_it_points_at(daemon, canary):
    before = canary_state(canary)
    daemon.docker_ok("Create", {"Name": "vol1"})
    swap_for_link(daemon.root / "vfs" / "vol1", canary)
    daemon.cli("delete", "vol1", check=True)
    assert not os.path.lexists(daemon.root / "vfs" / "vol1")
    assert canary_state(canary) == before
    assert daemon.docker_ok("List")["Volumes"] == []


def test_delete_of_a_volume_holding_links_removes_the_links_only(daemon, canary):
    before = canary_state(canary)
    daemon.docker_ok("Create", {"Name": "vol1"})
    volume = daemon.root / "vfs" / "vol1"
    (volume / "to-dir").symlink_to(canary)
    (volume / "sub").mkdir()
    (volume / "sub" / "to-file").symlink_to(canary / "a")
    daemon.docker_ok("Remove", {"Name": "vol1"})
    assert not volume.exists()
    assert canary_state(canary) == before


def test_snapshot_refuses_a_planted_snapshot_directory(daemon, canary):
    before = canary_state(canary)
    daemon.cli("create", "vol1", check=True)
    (daemon.root / "vfs" / "vol1" / "data").write_text("volume data")
    snapshots = daemon.root / "vfs" / ".convoy" / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    (snapshots / "vol1").symlink_to(canary)
    result = daemon.cli("snapshot", "create", "vol1")
    assert result.returncode == 4 and "never follows links in vfs.path" in result.stderr, result.stderr
    assert canary_state(canary) == before


def test_start_up_clean_up_of_half_made_snapshots_never_follows_a_link(daemon, canary):
    before = canary_state(canary)
    snapshots = daemon.root / "vfs" / ".convoy" / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    (snapshots / "vol1").symlink_to(canary)  # canary/old.partial looks like a half-made snapshot
    daemon.stop()
    daemon.start()
    daemon.docker_ok("List")
    time.sleep(0.5)  # start-up work runs after the sockets listen
    daemon.cli("create", "after-start", check=True)  # waits for nothing, but start-up is done by now
    assert canary_state(canary) == before


# swapped by a container while a snapshot copies its volume


def snapshot_with_a_swap(daemon, gate_files, swap):
    """`convoy snapshot create vol1`, running `swap` while the copy holds the first gated open."""
    gate = OpenGate(*gate_files)
    try:
        cli = subprocess.Popen(
            [*CONVOY, "--socket", str(daemon.socket), "snapshot", "create", "vol1"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        first = gate.held(30)
        assert first, "the snapshot never opened a gated file"
        swap()
        gate.allow(first)
        gate.allow_all_until(cli)
        stdout, stderr = cli.communicate(timeout=30)
    finally:
        gate.close()
    return cli.returncode, stdout, stderr


def all_snapshot_text(daemon) -> str:
    snapshots = daemon.root / "vfs" / ".convoy" / "snapshots"
    return "".join(p.read_text(errors="replace") for p in snapshots.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_directory_swapped_for_a_link_mid_snapshot_never_copies_host_files(daemon, canary):
    daemon.cli("create", "vol1", check=True)
    d = daemon.root / "vfs" / "vol1" / "d"
    d.mkdir()
    for name in ("a", "b", "passwd"):
        (d / name).write_text(f"the volume's own {name}")
    code, stdout, stderr = snapshot_with_a_swap(
        daemon, [d / "a", d / "b", d / "passwd"], lambda: swap_for_link(d, canary)
    )
    assert SECRET not in all_snapshot_text(daemon), "the snapshot copied host files through the link"
    if code == 0:  # the walk held the real directory open: it copied the volume's own files
        snapshot = stdout.strip()
        copied = daemon.root / "vfs" / ".convoy" / "snapshots" / "vol1" / snapshot / "d"
        assert sorted(p.read_text() for p in copied.iterdir()) == sorted(f"the volume's own {n}" for n in ("a", "b", "passwd"))
    else:
        assert code == 4 and "changed type while the snapshot was taken" in stderr, stderr


def test_a_directory_replaced_by_a_link_before_the_copy_reaches_it_fails_the_snapshot(daemon, canary):
    daemon.cli("create", "vol1", check=True)
    volume = daemon.root / "vfs" / "vol1"
    (volume / "a").write_text("first in the walk")
    (volume / "z").mkdir()
    (volume / "z" / "passwd").write_text("the volume's own")
    code, stdout, stderr = snapshot_with_a_swap(daemon, [volume / "a"], lambda: swap_for_link(volume / "z", canary))
    assert code == 4, (stdout, stderr)
    assert f"{volume}/z changed type while the snapshot was taken; take the snapshot again" in stderr
    assert SECRET not in all_snapshot_text(daemon)
    assert not [p for p in (daemon.root / "vfs" / ".convoy" / "snapshots" / "vol1").iterdir()], "no half snapshot kept"
    assert daemon.cli("snapshot", "list", "--json", check=True).stdout.strip() == "[]"


def test_a_file_swapped_for_a_link_mid_snapshot_fails_it(daemon, canary):
    daemon.cli("create", "vol1", check=True)
    volume = daemon.root / "vfs" / "vol1"
    (volume / "a").write_text("first in the walk")
    (volume / "b").write_text("the volume's own")

    def swap():
        (volume / "b").unlink()
        (volume / "b").symlink_to(canary / "b")  # a link is copied as a link, never followed

    code, stdout, stderr = snapshot_with_a_swap(daemon, [volume / "a"], swap)
    assert SECRET not in all_snapshot_text(daemon)
    assert code == 4 and "b changed type while the snapshot was taken" in stderr, (stdout, stderr)


def test_files_deleted_mid_snapshot_are_simply_not_in_it(daemon):
    daemon.cli("create", "vol1", check=True)
    volume = daemon.root / "vfs" / "vol1"
    (volume / "a").write_text("first in the walk")
    (volume / "b-file").write_text("a temporary file")
    (volume / "c-link").symlink_to("b-file")
    (volume / "d-dir").mkdir()

    def delete():
        (volume / "b-file").unlink()
        (volume / "c-link").unlink()
        (volume / "d-dir").rmdir()

    code, stdout, stderr = snapshot_with_a_swap(daemon, [volume / "a"], delete)
    assert code == 0, stderr
    copied = daemon.root / "vfs" / ".convoy" / "snapshots" / "vol1" / stdout.strip()
    assert sorted(p.name for p in copied.iterdir()) == ["a"]
