"""Host users other than root can reach nothing a volume holds.

A volume may hold a setuid-root binary and a world-writable device node (a
restore keeps them: they are legitimately a container's data). What keeps
them from the host's users is that `--root`, `vfs.path` (with its `.convoy`
and snapshot directories) and the mount root are 0700, as Docker does for
/var/lib/docker/volumes, and existing directories are fixed at start. The
sockets answer root only.
"""

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon

pytestmark = pytest.mark.needs_root

NOBODY = 65534
# Runs as uid 65534 with no groups: tries each thing a local user could, prints what happened.
PROBE = r"""
import json, os, socket, subprocess, sys
out = {}
for d in json.loads(sys.argv[1])["dirs"]:
    for what, attempt in (
        ("list", lambda: os.listdir(d)),
        ("exec", lambda: subprocess.run([os.path.join(d, "suid-true")], check=True)),
        ("device", lambda: open(os.path.join(d, "null-dev"), "r+b").close()),
    ):
        try:
            attempt()
            out[f"{what} {d}"] = "allowed"
        except PermissionError:
            out[f"{what} {d}"] = "denied"
        except Exception as err:
            out[f"{what} {d}"] = f"other: {type(err).__name__}: {err}"
for s in json.loads(sys.argv[1])["sockets"]:
    try:
        socket.socket(socket.AF_UNIX).connect(s)
        out[f"connect {s}"] = "allowed"
    except PermissionError:
        out[f"connect {s}"] = "denied"
print(json.dumps(out))
"""


def as_nobody(dirs, sockets, gid: int = NOBODY) -> dict:
    result = subprocess.run(
        ["setpriv", "--reuid", str(NOBODY), "--regid", str(gid), "--clear-groups",
         "/usr/bin/python3", "-c", PROBE, json.dumps({"dirs": [str(d) for d in dirs], "sockets": [str(s) for s in sockets]})],
        capture_output=True, text=True, timeout=60, cwd="/", check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def plant_dangerous_files(directory: Path) -> None:
    shutil.copy("/bin/true", directory / "suid-true")
    os.chmod(directory / "suid-true", 0o4755)
    os.mknod(directory / "null-dev", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(directory / "null-dev", 0o666)


@pytest.fixture
def open_base():
    """A base directory every user may traverse (unlike pytest's 0700 tmp_path): only convoy's modes protect."""
    base = Path(tempfile.mkdtemp(prefix="convoy-perms-", dir="/tmp"))
    base.chmod(0o755)
    daemons = []
    yield base, daemons
    for daemon in daemons:
        daemon.stop()
        daemon.cleanup_mounts()
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("separate_vfs_path", [False, True], ids=["vfs-under-root", "vfs-path-elsewhere"])
def test_a_host_user_cannot_reach_setuid_binaries_devices_or_sockets(open_base, separate_vfs_path):
    base, daemons = open_base
    vfs = base / "shared-vfs" if separate_vfs_path else base / "root" / "vfs"
    args = ["--driver-opts", f"vfs.path={vfs}"] if separate_vfs_path else []
    daemon = Daemon(base, *args)
    daemons.append(daemon)
    # directories left world-readable by an older version or by hand: fixed at start
    for path in (daemon.root, vfs / ".convoy" / "volumes", vfs / ".convoy" / "snapshots", daemon.mount_root):
        path.mkdir(parents=True, mode=0o755, exist_ok=True)
        path.chmod(0o755)
    daemon.start()

    daemon.cli("create", "src", check=True)
    mountpoint = Path(daemon.docker_ok("Mount", {"Name": "src", "ID": "c1"})["Mountpoint"])
    plant_dangerous_files(mountpoint)
    snapshot = daemon.cli("snapshot", "create", "src", check=True).stdout.strip()
    url = daemon.cli("backup", "create", snapshot, "--dest", f"vfs://{base / 'store'}", check=True).stdout.strip()
    daemon.cli("create", "restored", "--backup", url, check=True)
    restored_mount = Path(daemon.docker_ok("Mount", {"Name": "restored", "ID": "c2"})["Mountpoint"])

    reachable_by_name = [
        vfs / "src", vfs / "restored", mountpoint, restored_mount,
        vfs / ".convoy" / "snapshots" / "src" / snapshot,
    ]
    result = as_nobody(reachable_by_name, [daemon.socket, daemon.plugin_socket])
    assert set(result.values()) == {"denied"}, {k: v for k, v in result.items() if v != "denied"}
    # a user whose group is root's (gid 0) is still not root: the sockets are the owner's alone
    in_root_group = as_nobody([], [daemon.socket, daemon.plugin_socket], gid=0)
    assert set(in_root_group.values()) == {"denied"}, in_root_group
    for path in (
        daemon.root,
        vfs,
        vfs / ".convoy",
        vfs / ".convoy" / "volumes",
        vfs / ".convoy" / "snapshots",
        daemon.mount_root,
    ):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path

    # the probe itself works: the same files in a directory a user may enter are reachable
    public = base / "public"
    public.mkdir(mode=0o755)
    public.chmod(0o755)
    plant_dangerous_files(public)
    os.chmod(public / "suid-true", 0o755)  # no set-uid binary left open to all, even in a test
    control = as_nobody([public], [])
    assert set(control.values()) == {"allowed"}, control
