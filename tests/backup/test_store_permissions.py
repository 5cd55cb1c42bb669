"""A vfs:// store's files are its owner's alone.

Block objects were created 0644 in 0755 directories: a file only root could
read was readable by every local user straight from the store. Everything a
store creates is now 0700 (directories) or 0600 (objects), whatever the
umask; a store root that existed before keeps the mode its user gave it.
Checked as a real other user (uid 65534 through setpriv) on a path that
user can otherwise reach.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from app.backup import SnapshotSource, create_backup

NOBODY = 65534
SECRET = b"root only\n" * 1000

# What uid 65534 does with each path: print one errno name (or "read"/"listed") a line.
PROBE = """
import errno, os, sys
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
            print("listed")
        else:
            with open(path, "rb") as f:
                f.read(1)
            print("read")
    except OSError as e:
        print(errno.errorcode[e.errno])
"""


def as_nobody(paths: list[Path]) -> list[str]:
    """Try to read (files) or list (directories) every path as uid 65534."""
    if not shutil.which("setpriv"):
        pytest.fail("setpriv is missing (util-linux)")
    result = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "/usr/bin/python3", "-c", PROBE,
         *map(str, paths)],
        capture_output=True, text=True, check=True,
    )
    return result.stdout.split()


@pytest.fixture
def reachable(tmp_path):
    """A directory every user may enter (pytest's own tmp is root-only, which would hide the problem)."""
    base = Path(tempfile.mkdtemp(prefix="convoy-perm-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def check_store(store: Path, existed: bool) -> None:
    """Owner-only modes on everything the store made, and nothing readable by uid 65534."""
    made = [store] if not existed else []
    for dirpath, dirnames, filenames in os.walk(store):
        made += [Path(dirpath, n) for n in dirnames + filenames]
    assert any(p.is_file() for p in made), "the store holds objects"
    outcomes = as_nobody(made)
    assert outcomes == ["EACCES"] * len(made), dict(zip(map(str, made), outcomes, strict=False))
    modes = {str(p.relative_to(store.parent)): stat.S_IMODE(p.lstat().st_mode) for p in made}
    assert modes == {k: (0o700 if Path(store.parent, k).is_dir() else 0o600) for k in modes}
    if existed:
        assert stat.S_IMODE(store.stat().st_mode) == 0o755, "the user's own directory keeps its mode"


def make_source(base: Path) -> Path:
    source = base / "source"
    source.mkdir(mode=0o700)
    (source / "secret").write_bytes(SECRET)
    (source / "secret").chmod(0o600)
    return source


@pytest.mark.needs_root
@pytest.mark.parametrize("umask", [0o000, 0o022], indirect=True, ids=["umask-000", "umask-022"])
@pytest.mark.parametrize("existed", [False, True], ids=["new-root", "existing-root"])
def test_store_objects_are_owner_only(reachable, umask, existed):
    store = reachable / "store"
    if existed:
        store.mkdir()
        store.chmod(0o755)
    source = make_source(reachable)
    create_backup(f"vfs://{store}", "vol1", SnapshotSource("s", str(source)))
    check_store(store, existed)


@pytest.mark.needs_root
def test_store_written_by_the_daemon_is_owner_only(daemon, reachable):
    """`convoy backup create` to a vfs:// store beside other users' files."""
    store = reachable / "backups" / "store"  # two levels convoy creates
    daemon.cli("create", "vol1", check=True)
    (daemon.root / "vfs" / "vol1" / "secret").write_bytes(SECRET)
    snapshot = daemon.cli("snapshot", "create", "vol1", check=True).stdout.strip()
    url = daemon.cli("backup", "create", snapshot, "--dest", f"vfs://{store}", check=True).stdout.strip()
    check_store(store.parent, existed=False)
    # and the store still works for its owner
    daemon.cli("create", "copy", "--backup", url, check=True)
    assert (daemon.root / "vfs" / "copy" / "secret").read_bytes() == SECRET
    listed = json.loads(daemon.cli("backup", "list", f"vfs://{store}", "--json", check=True).stdout)
    assert [b["url"] for b in listed] == [url]
