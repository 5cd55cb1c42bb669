"""Daemons on the ebs back-end, each posing as one instance of the EC2 emulator (tests/ec2lab)."""

from __future__ import annotations

import pytest

from tests.ec2lab.fixture import INSTANCE_A, INSTANCE_B

__all__ = ["INSTANCE_A", "INSTANCE_B"]


@pytest.fixture
def ebs_host(make_daemon, ec2lab):
    """ebs_host(instance_id, name, *daemon_args): a daemon whose instance metadata says it is that instance."""

    def make(instance_id: str = INSTANCE_A, name: str = "host-a", *args: str):
        env = {
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": ec2lab.imds_endpoint(instance_id),
            "AWS_ACCESS_KEY_ID": "ec2lab",
            "AWS_SECRET_ACCESS_KEY": "ec2lab",
        }
        return make_daemon(
            "--drivers", "ebs",
            "--driver-opts", f"ebs.endpoint={ec2lab.endpoint}",
            "--driver-opts", f"ebs.dev_root={ec2lab.dev_root}",
            *args,
            name=name,
            env=env,
        )

    return make
