"""pytest fixtures: `ec2lab` (an emulator with two instances) and `make_ec2lab` (choose instances, dev root, delays).

The emulator runs in a subprocess (`python -m tests.ec2lab`), so a test can restart or kill -9 it. Teardown removes
every loop device whose file lies in the lab's state dir and every link to one, unmounting what a failed test left
mounted on them, whatever state the test ended in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ec2lab import dataplane
from tests.ec2lab.admin import AdminClient, AdminError
from tests.ec2lab.config import DEFAULT_DELAYS
from tests.labs.process import LabProcess
from tests.moto_server import free_port

INSTANCE_A = "i-0a000000000000001"
INSTANCE_B = "i-0b000000000000002"


class Ec2Lab(LabProcess):
    """One emulator. .endpoint (EC2 API, for boto3's endpoint_url), .imds_endpoint(instance_id), .admin (AdminClient),
    .state_dir, .dev_root, .region, .instances (id -> platform); .client() a boto3 EC2 client; .restart(), .kill(),
    .cleanup() (tests/labs/process.py)."""

    name = "ec2lab"

    def __init__(
        self,
        root: Path,
        instances: dict[str, str],
        dev_root: Path | None = None,
        region: str = "us-east-1",
        delays: dict[str, float] | None = None,
    ):
        super().__init__(root, dev_root)
        self.region = region
        self.instances = dict(instances)
        self.delays = {**DEFAULT_DELAYS, **(delays or {})}
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.admin = AdminClient(self.endpoint)
        self._imds_ports = {instance_id: free_port() for instance_id in instances}

    def imds_endpoint(self, instance_id: str) -> str:
        """The IMDS URL for AWS_EC2_METADATA_SERVICE_ENDPOINT of a daemon posing as that instance."""
        if instance_id not in self._imds_ports:
            raise KeyError(f"{instance_id} is not an instance of this lab; it has {sorted(self._imds_ports)}")
        return f"http://127.0.0.1:{self._imds_ports[instance_id]}/"

    def add_instance(self, instance_id: str, platform: str = "nitro", az: str | None = None) -> str:
        """A further instance (also after restarts); returns its IMDS endpoint."""
        port = free_port()
        endpoint = self.admin.add_instance(instance_id, platform, az, imds_port=port)
        self._imds_ports[instance_id], self.instances[instance_id] = port, platform
        return endpoint

    def link_for(self, volume_id: str, instance_id: str | None = None, device: str = "/dev/sdf") -> Path:
        """Where the volume's device link appears when attached to the instance (nitro by default)."""
        platform = self.instances.get(instance_id or "", "nitro")
        return dataplane.link_path(self.dev_root, platform, volume_id, device)

    def client(self, **config: Any):
        """A real boto3 EC2 client on this lab (dummy credentials, standard retries unless `config` says otherwise)."""
        import boto3
        from botocore.config import Config

        retries = config.pop("retries", {"mode": "standard", "max_attempts": 5})
        return boto3.client(
            "ec2",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="ec2lab",
            aws_secret_access_key="ec2lab",
            config=Config(retries=retries, connect_timeout=5, read_timeout=30, **config),
        )

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "tests.ec2lab", "--state", str(self.state_dir), "--port", str(self.port)]
        args += ["--dev-root", str(self.dev_root), "--region", self.region]
        for instance_id, platform in self.instances.items():
            args += ["--imds", f"{instance_id}={self._imds_ports[instance_id]}" + (":xen" if platform == "xen" else "")]
        for name, seconds in self.delays.items():
            args += [f"--{name}-delay", str(seconds)]
        return args

    def ready(self) -> bool:
        try:
            known = self.admin.state()["instances"]
        except AdminError:
            return False
        return all(known.get(i, {}).get("imds_port") == p for i, p in self._imds_ports.items())


@pytest.fixture
def make_ec2lab(tmp_path) -> Iterator:
    """make_ec2lab(name="ec2lab", instances={id: "nitro"|"xen"}, dev_root=None, region="us-east-1", delays={}, start=True)."""
    labs: list[Ec2Lab] = []

    def make(
        name: str = "ec2lab",
        instances: dict[str, str] | None = None,
        dev_root: Path | None = None,
        region: str = "us-east-1",
        delays: dict[str, float] | None = None,
        start: bool = True,
    ) -> Ec2Lab:
        lab = Ec2Lab(tmp_path / name, instances or {INSTANCE_A: "nitro", INSTANCE_B: "nitro"}, dev_root, region, delays)
        labs.append(lab)
        return lab.start() if start else lab

    yield make
    for lab in labs:
        lab.cleanup()


@pytest.fixture
def ec2lab(make_ec2lab) -> Ec2Lab:
    """An emulator with instances INSTANCE_A and INSTANCE_B (both nitro, us-east-1a) and a private dev root."""
    return make_ec2lab()
