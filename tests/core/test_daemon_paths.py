"""Settings whose directories overlap would let a volume be mounted over convoy's own files."""

import subprocess

import pytest

pytestmark = pytest.mark.needs_root

OVERLAPS = {
    "mount root is --root": lambda d: ["--mount-root", str(d.root)],
    "mount root holds --root": lambda d: ["--mount-root", str(d.base)],
    "mount root is vfs.path": lambda d: ["--mount-root", str(d.base / "store"), "--driver-opts", f"vfs.path={d.base / 'store'}"],
    "mount root inside vfs.path": lambda d: [
        "--mount-root",
        str(d.base / "store" / "m"),
        "--driver-opts",
        f"vfs.path={d.base / 'store'}",
    ],
    "vfs.path inside the mount root": lambda d: ["--driver-opts", f"vfs.path={d.mount_root / 'vfs'}"],
}


@pytest.mark.parametrize("overlap", list(OVERLAPS))
def test_a_mount_root_that_overlaps_the_stores_stops_the_start(make_daemon, overlap):
    daemon = make_daemon(start=False)
    daemon.base.mkdir(parents=True, exist_ok=True)
    args = daemon.args()
    extra = OVERLAPS[overlap](daemon)
    if extra[0] == "--mount-root":  # replaces the harness's own --mount-root
        at = args.index("--mount-root")
        args[at + 1] = extra[1]
        extra = extra[2:]
    result = subprocess.run(args + extra, capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode != 0
    assert "overlaps" in result.stderr and "give them separate directories" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_the_default_layout_starts(make_daemon):
    daemon = make_daemon(start=False)
    daemon.mount_root = daemon.root / "mounts"
    daemon.start()
    daemon.docker_ok("Create", {"Name": "vfs"})  # named like the store: mounted beside it, not over it
    mountpoint = daemon.docker_ok("Mount", {"Name": "vfs", "ID": "c1"})["Mountpoint"]
    assert mountpoint == str(daemon.root / "mounts" / "vfs")
    daemon.docker_ok("Unmount", {"Name": "vfs", "ID": "c1"})
