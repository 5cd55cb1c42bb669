"""What the ebs back-end tells a host at start, and attaches that race for device names."""

from __future__ import annotations

import json
import threading

import pytest

from tests.ebs.conftest import INSTANCE_A
from tests.moto_server import free_port

pytestmark = pytest.mark.needs_root


def test_a_host_that_is_not_on_ec2_is_told_at_start_and_on_use(make_daemon):
    silent = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    host = make_daemon("--drivers", "ebs", env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": silent})
    host.wait_ready()
    assert "does not look like an EC2 instance" in host.log_text()
    status, data = host.docker("Create", {"Name": "nowhere", "Opts": {}})
    assert status != 200 and "does not look like an EC2 instance" in data["Err"] and silent in data["Err"], data
    info = json.loads(host.cli("info", "--json", check=True).stdout)
    assert "does not look like an EC2 instance" in info["drivers"]["ebs"]["error"]


def test_volumes_mounted_at_once_get_distinct_device_names(ebs_host, ec2lab):
    host = ebs_host()
    names = [f"para{i}" for i in range(4)]
    for name in names:
        host.docker_ok("Create", {"Name": name, "Opts": {"size": "1G"}})
    results: dict[str, tuple[int, dict]] = {}

    def mount(name: str) -> None:
        results[name] = host.docker("Mount", {"Name": name, "ID": "c1"})

    threads = [threading.Thread(target=mount, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(status == 200 and not data.get("Err") for status, data in results.values()), results
    volumes = ec2lab.client().describe_volumes(Filters=[{"Name": "tag-key", "Values": ["convoy:volume"]}])["Volumes"]
    devices = [a["Device"] for v in volumes for a in v["Attachments"] if a["InstanceId"] == INSTANCE_A]
    assert len(devices) == len(names) == len(set(devices)), devices
    for name in names:
        host.docker_ok("Unmount", {"Name": name, "ID": "c1"})
