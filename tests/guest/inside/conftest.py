"""Fixtures of the tests that run inside the guest kernel (python -m tests.guest run): real device-mapper
thin pools on loop files and a real kernel NFS export mounted twice. Every test here runs as root with
DM_DISABLE_UDEV=1 (tests/guest/boot-inside.sh sets it: there is no udev in the guest)."""

import itertools
import os
import subprocess

import pytest

from tests.guest.inside import nfs, thinpool

_pool_numbers = itertools.count()


@pytest.fixture(autouse=True, scope="session")
def _inside_the_guest():
    if os.environ.get("CONVOY_GUEST") != "1":
        pytest.exit("tests/guest/inside runs inside the guest only: python -m tests.guest run", returncode=4)


@pytest.fixture
def pool_devices(tmp_path):
    """Loop devices for a pool (data 4 GiB and metadata 64 MiB, sparse files) and a fresh pool name; the
    pool itself is not created, for code that creates it (a driver given dm.datadev/dm.metadatadev).
    Afterwards any pool of that name, its thin devices and their mounts are removed, then the loops."""
    data, metadata = tmp_path / "pool-data.img", tmp_path / "pool-metadata.img"
    subprocess.run(["truncate", "-s", "4G", data], check=True)
    subprocess.run(["truncate", "-s", "64M", metadata], check=True)
    devices = thinpool.PoolDevices(datadev=thinpool.attach_loop(data), metadatadev=thinpool.attach_loop(metadata),
                                   name=f"convoy-test-pool-{os.getpid()}-{next(_pool_numbers)}")
    yield devices
    thinpool.remove_pool(devices)


@pytest.fixture
def thin_pool(pool_devices):
    """An active dm-thin pool (Convoy's 2 MiB blocks) on `pool_devices`: .datadev, .metadatadev, .name, .path."""
    return thinpool.ThinPool(pool_devices.datadev, pool_devices.metadatadev, pool_devices.name).create()


@pytest.fixture(scope="session")
def nfs_server():
    nfs.start_server()
    yield
    nfs.stop_server()


@pytest.fixture
def nfs_mounts(nfs_server, tmp_path):
    """A directory exported by the guest's kernel NFS server and mounted twice over 127.0.0.1 (NFSv4.2,
    no shared cache): .export (the server's directory), .first and .second, the two 'hosts' mounts."""
    mounts = nfs.export_and_mount_twice(tmp_path / "export", tmp_path / "host-a", tmp_path / "host-b")
    yield mounts
    nfs.unmount_and_unexport(mounts)
