"""The kernel NFS server in the guest, exporting directories that the guest mounts back over 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.guest.inside.thinpool import sh

EXPORT_OPTIONS = "rw,sync,no_root_squash,no_subtree_check,insecure"
# Two mounts of one export as two hosts would have: NFSv4.2, each with its own cache (nosharecache),
# so what one "host" writes reaches the other through the server, not through a shared page cache.
MOUNT_OPTIONS = "vers=4.2,nosharecache"


def start_server() -> None:
    """rpcbind, mountd and nfsd, with NFSv4's grace and lease at 10 s (the kernel's 90 s default stalls writes)."""
    Path("/proc/fs/nfsd").mkdir(exist_ok=True)
    if not os.path.ismount("/proc/fs/nfsd"):
        sh("mount", "-t", "nfsd", "nfsd", "/proc/fs/nfsd")
    Path("/run/rpc_pipefs").mkdir(parents=True, exist_ok=True)
    if not os.path.ismount("/run/rpc_pipefs"):
        sh("mount", "-t", "rpc_pipefs", "sunrpc", "/run/rpc_pipefs")
    Path("/var/lib/nfs/v4recovery").mkdir(parents=True, exist_ok=True)
    for knob in ("nfsv4leasetime", "nfsv4gracetime"):
        Path("/proc/fs/nfsd", knob).write_text("10\n")
    sh("rpcbind", "-w")
    subprocess.run(["rpc.statd", "--no-notify"], check=False, capture_output=True)  # NFSv3 locks only
    Path("/etc/exports").write_text("")
    sh("exportfs", "-ra")
    sh("rpc.mountd")
    sh("rpc.nfsd", "4")


def stop_server() -> None:
    subprocess.run(["exportfs", "-au"], check=False)
    subprocess.run(["rpc.nfsd", "0"], check=False)


@dataclass
class NfsMounts:
    """One exported directory and two NFS mounts of it (`first`, `second`): two hosts sharing a file system."""

    export: Path
    first: Path
    second: Path


def export_and_mount_twice(export: Path, first: Path, second: Path) -> NfsMounts:
    for path in (export, first, second):
        path.mkdir(parents=True, exist_ok=True)
    sh("exportfs", "-o", EXPORT_OPTIONS, f"127.0.0.1:{export}")
    for point in (first, second):
        sh("mount", "-t", "nfs", "-o", MOUNT_OPTIONS, f"127.0.0.1:{export}", point)
    return NfsMounts(export, first, second)


def unmount_and_unexport(mounts: NfsMounts) -> None:
    for point in (mounts.first, mounts.second):
        if os.path.ismount(point) and subprocess.run(["umount", point], check=False).returncode != 0:
            subprocess.run(["umount", "-f", "-l", point], check=False)  # a daemon a test killed may hold it
    subprocess.run(["exportfs", "-u", f"127.0.0.1:{mounts.export}"], check=False)
