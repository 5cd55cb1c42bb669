"""The guest's real parts work: a thin volume in a dm-thin pool holds a file system, a thin snapshot
keeps its origin's data, what one NFS mount writes the other reads, and the guest's Docker engine runs a
container on a thin volume."""

import os
import subprocess

from tests.guest.inside.thinpool import thin_devices_of

GIB = 1 << 30


def test_thin_volume_takes_a_file_system_and_a_snapshot_keeps_its_data(thin_pool, tmp_path):
    volume = thin_pool.create_thin(0, GIB)
    subprocess.run(["mkfs.ext4", "-q", volume], check=True)
    mountpoint = tmp_path / "volume"
    mountpoint.mkdir()
    subprocess.run(["mount", volume, mountpoint], check=True)
    try:
        (mountpoint / "file").write_text("before the snapshot")
        # the origin suspended (dmsetup freezes its file system first): a clean file system in the snapshot
        subprocess.run(["dmsetup", "suspend", volume], check=True)
        try:
            thin_pool.message("create_snap 1 0")
        finally:
            subprocess.run(["dmsetup", "resume", volume], check=True)
        (mountpoint / "file").write_text("after the snapshot")
    finally:
        subprocess.run(["umount", mountpoint], check=True)
    snapshot = thin_pool.activate(1, GIB)
    subprocess.run(["e2fsck", "-fn", snapshot], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "ro", snapshot, mountpoint], check=True)
    try:
        assert (mountpoint / "file").read_text() == "before the snapshot"
    finally:
        subprocess.run(["umount", mountpoint], check=True)
    assert sorted(thin_devices_of(thin_pool.name)) == sorted(os.path.basename(d) for d in (volume, snapshot))


def test_what_one_nfs_mount_writes_the_other_reads(nfs_mounts):
    (nfs_mounts.first / "from-a").write_text("written on host a")
    assert (nfs_mounts.second / "from-a").read_text() == "written on host a"
    assert (nfs_mounts.export / "from-a").read_text() == "written on host a"
    (nfs_mounts.second / "from-b").write_text("written on host b")
    assert (nfs_mounts.first / "from-b").read_text() == "written on host b"
    with open("/proc/self/mountinfo") as info:
        kinds = {line.split(" - ")[1].split()[0] for line in info if str(nfs_mounts.first) in line.split()[4]}
    assert kinds == {"nfs4"}


def test_a_container_of_the_guests_docker_engine_writes_into_a_thin_volume(docker_engine, thin_pool, tmp_path):
    volume = thin_pool.create_thin(0, GIB)
    subprocess.run(["mkfs.ext4", "-q", volume], check=True)
    mountpoint = tmp_path / "volume"
    mountpoint.mkdir()
    subprocess.run(["mount", volume, mountpoint], check=True)
    try:
        subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{mountpoint}:/data",
                        "convoy-test-busybox:latest", "sh", "-c", "echo from a container > /data/file"], check=True)
        assert (mountpoint / "file").read_text() == "from a container\n"
    finally:
        subprocess.run(["umount", mountpoint], check=True)
