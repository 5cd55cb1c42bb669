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
from tests.e2e.swarm import volume_follows_its_task
from tests.ec2lab.fixture import INSTANCE_A, INSTANCE_B

pytestmark = pytest.mark.e2e


def ebs_settings(lab, dev_root: Path, instance_id: str, drivers: str = "ebs") -> dict[str, str]:
    """The plugin's settings for a host posing as `instance_id` of the emulator."""
    return {
        "DRIVER": drivers,
        "DRIVER_OPTS": f"ebs.endpoint={lab.endpoint} ebs.dev_root={dev_root}",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": lab.imds_endpoint(instance_id),
        "AWS_ACCESS_KEY_ID": "ec2lab",
        "AWS_SECRET_ACCESS_KEY": "ec2lab",
        "AWS_REGION": lab.region,
    }


@pytest.fixture
def ebs_plugin(engine, make_ec2lab, s3_endpoint):
    """The plugin switched to DRIVER=ebs,vfs on an emulator posing this host as INSTANCE_A, with S3 backups to the
    moto endpoint; switched back after. The lab's .dev_root is under the host's /dev, which every plugin sees."""
    dev_root = Path("/dev") / f"convoy-ec2lab-{uuid.uuid4().hex[:8]}"
    lab = make_ec2lab(dev_root=dev_root)
    settings = {**ebs_settings(lab, dev_root, INSTANCE_A, drivers="ebs,vfs"), "S3_ENDPOINT": s3_endpoint}
    try:
        with engine.plugin_set(settings):
            yield lab
    finally:
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

    # the other options, as Docker passes them
    tuned = vol("ebstuned")
    key = "arn:aws:kms:us-east-1:123456789012:key/e2e"
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=2G", "-o", "throughput=250", "-o", "encrypted=true",
                  "-o", f"kms_key_id={key}", "-o", f"az={lab.region}a", "-o", "fs=xfs", tuned)
    described = lab.client().describe_volumes(VolumeIds=[engine.convoy_json("inspect", tuned)["backend"]["volume_id"]])
    shown = described["Volumes"][0]
    assert (shown["Size"], shown["Throughput"], shown["KmsKeyId"], shown["AvailabilityZone"]) == (2, 250, key, f"{lab.region}a")
    assert run_in(engine, f"{tuned}:/data", "stat -f -c %T /data") == "xfs\n"

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

    # another instance holds two volumes: a running one is refused by name; once it is stopped, the volume
    # created with force_detach=true is taken from it, the other is refused with what to do
    forced = vol("ebsforced")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1G", "-o", "force_detach=true", forced)
    run_in(engine, f"{forced}:/data", "echo kept > /data/f")
    held = {name: "/dev/sdg", forced: "/dev/sdh"}
    ids = {volume: engine.convoy_json("inspect", volume)["backend"]["volume_id"] for volume in held}
    for volume, device in held.items():
        lab.client().attach_volume(VolumeId=ids[volume], InstanceId=INSTANCE_B, Device=device)
    lab.client().get_waiter("volume_in_use").wait(VolumeIds=list(ids.values()), WaiterConfig={"Delay": 1})
    refused = engine.docker("run", "--rm", "-v", f"{name}:/data", TEST_IMAGE, "true", check=False)
    assert refused.returncode != 0 and INSTANCE_B in refused.stderr and "running" in refused.stderr, refused.stderr
    lab.admin.stop_instance(INSTANCE_B)
    refused = engine.docker("run", "--rm", "-v", f"{name}:/data", TEST_IMAGE, "true", check=False)
    assert refused.returncode != 0 and "force_detach" in refused.stderr, refused.stderr
    assert run_in(engine, f"{forced}:/data", "cat /data/f") == "kept\n", "force-detached from the stopped instance"
    assert attachments(lab, ids[forced]) == [] and attachments(lab, ids[name]) == [INSTANCE_B]
    logged = [line for line in engine.logs().splitlines() if f"force-detaching {forced}" in line]
    assert logged and INSTANCE_B in logged[-1], "the log names the instance it was taken from"


def test_ebs_incremental_image_backups_to_s3_restore_into_ebs_and_vfs(engine, vol, ebs_plugin, s3_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="e2e", aws_secret_access_key="e2e")
    s3.create_bucket(Bucket="convoy-ebs-e2e")
    store = "s3://convoy-ebs-e2e@us-east-1/ebs"
    name = vol("ebss3")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1G", name)
    run_in(engine, f"{name}:/data", "dd if=/dev/urandom of=/data/a bs=1M count=8 2>/dev/null")
    first = engine.convoy("backup", "create", engine.convoy("snapshot", "create", name).stdout.strip(),
                          "--dest", store).stdout.strip()
    run_in(engine, f"{name}:/data", "dd if=/dev/urandom of=/data/b bs=1M count=2 2>/dev/null")
    digests = run_in(engine, f"{name}:/data", "cd /data && md5sum a b")
    second = engine.convoy("backup", "create", engine.convoy("snapshot", "create", name).stdout.strip(),
                           "--dest", store).stdout.strip()
    assert first != second and second.startswith(store)

    stats = engine.convoy_json("backup", "inspect", second)["stats"]
    # EBS's ListChangedBlocks named what changed since the first backup's snapshot: only that was read
    assert stats["unchanged_bytes"] >= 8 << 20 and stats["read_bytes"] < 6 << 20, stats
    for driver in ("ebs", "vfs"):
        restored = vol(f"from-s3-{driver}")
        engine.docker("volume", "create", "-d", PLUGIN, "-o", f"backup={second}", "-o", f"driver={driver}", restored)
        assert run_in(engine, f"{restored}:/data", "cd /data && md5sum a b") == digests, driver
        assert engine.convoy_json("inspect", restored)["driver"] == driver


def test_ebs_swarm_service_volume_follows_its_task_to_another_instance(engine, second_engine, vol, ebs_plugin):
    """Two engines on this machine pose as two instances of one AZ: the service's task moves, its volume follows."""
    lab, other = ebs_plugin, second_engine
    other.configure_plugin(ebs_settings(lab, lab.dev_root, INSTANCE_B))
    name = vol("follow")

    def holders() -> list[str]:
        return attachments(lab, engine.convoy_json("inspect", name)["backend"]["volume_id"])

    volume_follows_its_task(engine, other, name, holders, INSTANCE_A, INSTANCE_B)
    volume_id = other.convoy_json("inspect", name)["backend"]["volume_id"]
    assert volume_id == engine.convoy_json("inspect", name)["backend"]["volume_id"], "one EBS volume, seen by both"
