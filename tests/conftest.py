"""Real parts shared by every test folder: daemons, a moto S3 server, a loop-mounted XFS."""

import hashlib
import os
import shutil
import subprocess

import pytest

from tests.daemon_harness import Daemon
from tests.dolab.fixture import dolab, make_dolab  # noqa: F401 - fixtures: the DigitalOcean emulator, for any test folder
from tests.ec2lab.fixture import ec2lab, make_ec2lab  # noqa: F401 - fixtures: the EC2/EBS emulator, for any test folder
from tests.moto_server import moto_server


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: the daemon makes real mounts")
        for item in items:
            if "needs_root" in item.keywords:
                item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_root: makes real mounts; runs as root (CI does)")


@pytest.fixture
def make_daemon(tmp_path):
    """Start daemons with their own roots; stop them and clean their mounts afterwards."""
    started = []

    def make(*args, name="host", env=None, start=True):
        daemon = Daemon(tmp_path / name, *args, env=env)
        started.append(daemon)
        return daemon.start() if start else daemon

    yield make
    for daemon in started:
        daemon.stop()
    for daemon in started:
        daemon.cleanup_mounts()


@pytest.fixture
def daemon(make_daemon):
    return make_daemon()



@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A real S3 HTTP endpoint (moto_server), reached through the custom-endpoint option."""
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh bucket; returns its name."""
    import boto3

    # the name is cut to S3's 63 characters: a digest of the whole test id keeps parametrized cases apart
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    name = "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40] + f"-{digest}-{os.getpid()}"
    name = "".join(c for c in name if c.isalnum() or c in "-.")[:60]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def xfs_root(tmp_path_factory):
    """A loop-mounted XFS with reflink=1 (as on hosts that run Docker on XFS)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to loop-mount XFS")
    if not shutil.which("mkfs.xfs"):
        pytest.fail("mkfs.xfs is missing: apt-get install xfsprogs (listed in ci/apt-packages.txt)")
    base = tmp_path_factory.mktemp("xfs")
    image = base / "xfs.img"
    mnt = base / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(2 << 30)
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True).stdout.strip()
    try:
        subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", dev], check=True)
        subprocess.run(["mount", dev, str(mnt)], check=True)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)
        image.unlink(missing_ok=True)


@pytest.fixture
def xfs_dir(xfs_root, request):
    path = xfs_root / request.node.name.replace("[", "-").replace("]", "")
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
