"""Fixtures of the tests that run inside the guest kernel (python -m tests.guest run): real device-mapper
thin pools on loop files and a real kernel NFS export mounted twice. Every test here runs as root with
DM_DISABLE_UDEV=1 (tests/guest/boot-inside.sh sets it: there is no udev in the guest)."""

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.guest.inside import nfs, thinpool

_pool_numbers = itertools.count()
RESULTS = Path("/results")  # the host's results directory (tests/guest/boot.py)


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


DOCKER_MODULES = ["overlay", "veth", "bridge", "br_netfilter", "nf_tables", "nft_chain_nat", "xt_MASQUERADE",
                  "xt_conntrack", "xt_addrtype", "iptable_nat", "iptable_filter"]


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory):
    """The guest's own Docker engine (ci/dockerd.sh, its state on the scratch disk; ~35 s to start under
    emulation) with the busybox test image (ci/make-busybox-image.sh): sets and yields DOCKER_HOST."""
    for module in DOCKER_MODULES:
        subprocess.run(["modprobe", module], check=False, capture_output=True)
    env = dict(os.environ, CONVOY_CI_ROOT=str(tmp_path_factory.mktemp("docker")))
    started = subprocess.run(["bash", "ci/dockerd.sh", "start"], env=env, capture_output=True, text=True)
    assert started.returncode == 0, f"dockerd did not start in the guest:\n{started.stderr}"
    docker_host = subprocess.run(["bash", "ci/dockerd.sh", "env"], env=env, capture_output=True, text=True,
                                 check=True).stdout.strip().removeprefix("DOCKER_HOST=")
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = docker_host
    subprocess.run(["bash", "ci/make-busybox-image.sh"], check=True)
    yield docker_host
    subprocess.run(["bash", "ci/dockerd.sh", "stop"], env=env, check=False)
    # The engine's log (with the plugin's own lines) goes out with the results: the scratch disk does not
    log = Path(env["CONVOY_CI_ROOT"]) / "dockerd.log"
    if log.exists() and RESULTS.is_dir():
        shutil.copyfile(log, RESULTS / "dockerd.log")
    if old is None:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = old
