"""The ebs back-end through the managed plugin (`docker plugin set convoy DRIVER=ebs`), against the EC2 emulator.

The emulator makes its device links under a directory of the host's /dev,
which the plugin sees (its /dev is the host's), and serves the instance
metadata on loopback, which the plugin reaches (host networking).
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from pathlib import Path

import pytest

from tests.e2e.engine import PLUGIN, TEST_IMAGE, wait_for
from tests.ec2lab.fixture import INSTANCE_A

pytestmark = pytest.mark.e2e


@pytest.fixture
def ebs_plugin(engine, make_ec2lab):
    """The plugin switched to DRIVER=ebs on an emulator posing this host as INSTANCE_A; switched back after."""
    dev_root = Path("/dev") / f"convoy-ec2lab-{uuid.uuid4().hex[:8]}"
    lab = make_ec2lab(dev_root=dev_root)
    settings = {
        "DRIVER": "ebs",
        "DRIVER_OPTS": f"ebs.endpoint={lab.endpoint} ebs.dev_root={dev_root}",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": lab.imds_endpoint(INSTANCE_A),
        "AWS_ACCESS_KEY_ID": "ec2lab",
        "AWS_SECRET_ACCESS_KEY": "ec2lab",
        "AWS_REGION": lab.region,
    }
    engine.docker("plugin", "disable", "-f", PLUGIN)
    engine.docker("plugin", "set", PLUGIN, *(f"{k}={v}" for k, v in settings.items()))
    engine.docker("plugin", "enable", "--timeout", "120", PLUGIN)
    try:
        yield lab
    finally:
        ids = engine.docker("ps", "-aq").stdout.split()
        if ids:
            engine.docker("rm", "-f", *ids, check=False)
        engine.docker("plugin", "disable", "-f", PLUGIN, check=False)
        engine.docker("plugin", "set", PLUGIN, "DRIVER=vfs,image", "DRIVER_OPTS=", *(f"{k}=" for k in list(settings)[2:]))
        engine.docker("plugin", "enable", "--timeout", "120", PLUGIN)
        lab.cleanup()
        shutil.rmtree(dev_root, ignore_errors=True)


def run_in(engine, volume_spec, script):
    return engine.docker("run", "--rm", "-v", volume_spec, TEST_IMAGE, "sh", "-c", script).stdout


def attachments(lab, volume_id: str) -> list[str]:
    volume = lab.client().describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return [a["InstanceId"] for a in volume["Attachments"] if a["State"] == "attached"]


def test_ebs_volumes_through_docker_survive_a_killed_plugin(engine, vol, ebs_plugin):
    lab = ebs_plugin
    name = vol("ebs")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=10G", "-o", "type=gp3", "-o", "iops=4000", name)
    volume_id = engine.convoy_json("inspect", name)["backend"]["volume_id"]
    described = lab.client().describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert (described["Size"], described["Iops"], described["Encrypted"]) == (10, 4000, True)

    run_in(engine, f"{name}:/data", "echo on-ebs > /data/f")
    assert run_in(engine, f"{name}:/data", "cat /data/f") == "on-ebs\n", "a new container reads it back"
    assert attachments(lab, volume_id) == [], "detached when no container uses it"

    engine.docker("run", "-d", "--name", "e2e-ebs-keeper", "-v", f"{name}:/data", TEST_IMAGE, "sleep", "600")
    try:
        old = engine.plugin_pids()
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        wait_for("Docker to restart the plugin", lambda: [p for p in engine.plugin_pids() if p not in old])
        engine.docker("exec", "e2e-ebs-keeper", "sh", "-c", "echo after-kill >> /data/f")
        assert engine.docker("exec", "e2e-ebs-keeper", "cat", "/data/f").stdout == "on-ebs\nafter-kill\n"
        assert attachments(lab, volume_id) == [INSTANCE_A], "attached once, not twice"
    finally:
        engine.docker("rm", "-f", "e2e-ebs-keeper", check=False)
    assert attachments(lab, volume_id) == []

    # adopt an existing EBS volume by id
    made = lab.client().create_volume(AvailabilityZone=f"{lab.region}a", Size=1, VolumeType="gp3")["VolumeId"]
    lab.client().get_waiter("volume_available").wait(VolumeIds=[made], WaiterConfig={"Delay": 1})
    adopted = vol("adopted")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", f"id={made}", adopted)
    run_in(engine, f"{adopted}:/data", "echo adopted > /data/g")
    assert run_in(engine, f"{adopted}:/data", "cat /data/g") == "adopted\n"
    engine.docker("volume", "rm", adopted)
    assert lab.client().describe_volumes(VolumeIds=[made])["Volumes"], "Docker's remove keeps an EBS volume"


def test_ebs_snapshots_backups_and_a_holder_elsewhere_through_docker(engine, vol, ebs_plugin):
    from tests.ec2lab.fixture import INSTANCE_B

    lab = ebs_plugin
    name = vol("ebssrc")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1G", name)
    run_in(engine, f"{name}:/data", "echo snapshot-me > /data/f")

    snapshot = engine.convoy("snapshot", "create", name).stdout.strip()
    snapshot_id = engine.convoy_json("snapshot", "inspect", snapshot)["details"]["snapshot_id"]
    clone = vol("ebsclone")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", f"snapshot={snapshot_id}", clone)
    assert run_in(engine, f"{clone}:/data", "cat /data/f") == "snapshot-me\n"

    url = engine.convoy("backup", "create", snapshot, "--dest", "ebs://").stdout.strip()
    assert url == f"ebs://{lab.region}/{snapshot_id}"
    restored = vol("ebsrestored")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", f"backup={url}", restored)
    assert run_in(engine, f"{restored}:/data", "cat /data/f") == "snapshot-me\n"

    # another instance holds the volume: a running one is refused by name, a stopped one needs force_detach
    volume_id = engine.convoy_json("inspect", name)["backend"]["volume_id"]
    lab.client().attach_volume(VolumeId=volume_id, InstanceId=INSTANCE_B, Device="/dev/sdg")
    lab.client().get_waiter("volume_in_use").wait(VolumeIds=[volume_id], WaiterConfig={"Delay": 1})
    refused = engine.docker("run", "--rm", "-v", f"{name}:/data", TEST_IMAGE, "true", check=False)
    assert refused.returncode != 0 and INSTANCE_B in refused.stderr and "running" in refused.stderr, refused.stderr
    lab.admin.stop_instance(INSTANCE_B)
    refused = engine.docker("run", "--rm", "-v", f"{name}:/data", TEST_IMAGE, "true", check=False)
    assert refused.returncode != 0 and "force_detach" in refused.stderr, refused.stderr
