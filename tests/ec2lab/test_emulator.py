"""The EC2/EBS emulator through real boto3 clients: each action, AWS's error codes, the data plane and the faults."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.exceptions import ClientError
from botocore.utils import IMDSFetcher, IMDSRegionProvider

from tests.ec2lab import dataplane
from tests.ec2lab.fixture import INSTANCE_A, INSTANCE_B

pytestmark = pytest.mark.needs_root
GIB = 1 << 30
AZ = "us-east-1a"
WAIT = 15  # seconds: every wait in these tests is bounded


@pytest.fixture(scope="module", autouse=True)
def no_loop_device_leaks(tmp_path_factory):
    """After the whole file, no loop device is left on any volume file of any lab these tests made."""
    yield
    base = tmp_path_factory.getbasetemp()
    leaked = [loop for loop in dataplane.loops_backed_under(base) if "/state/volumes/" in (dataplane.backing_file(loop) or "")]
    assert leaked == []


def wait_until(check, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def error_code(call, **kwargs) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"]


def describe(ec2, volume_id: str) -> dict:
    return ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]


def new_volume(ec2, size: int = 1, az: str = AZ, **kwargs) -> str:
    volume_id = ec2.create_volume(Size=size, AvailabilityZone=az, **kwargs)["VolumeId"]
    wait_until(lambda: describe(ec2, volume_id)["State"] == "available", f"{volume_id} available")
    return volume_id


def attach(ec2, volume_id: str, instance_id: str = INSTANCE_A, device: str = "/dev/sdf") -> None:
    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)
    wait_until(lambda: describe(ec2, volume_id)["Attachments"][0]["State"] == "attached", f"{volume_id} attached")


def detached(ec2, volume_id: str) -> bool:
    return describe(ec2, volume_id)["State"] == "available"


def device_size(path: Path) -> int:
    return int(subprocess.run(["blockdev", "--getsize64", str(path)], check=True, capture_output=True, text=True).stdout)


# --- CreateVolume / DescribeVolumes / DeleteVolume ----------------------------------------------------------------------
def test_create_volume_keeps_every_option(ec2lab):
    ec2 = ec2lab.client()
    tags = [{"ResourceType": "volume", "Tags": [{"Key": "convoy:volume", "Value": "db"}]}]
    vol = ec2.create_volume(
        Size=20,
        AvailabilityZone=AZ,
        VolumeType="gp3",
        Iops=4000,
        Throughput=250,
        Encrypted=True,
        KmsKeyId="alias/convoy",
        TagSpecifications=tags,
    )
    assert vol["State"] == "creating"
    assert vol["VolumeId"].startswith("vol-") and len(vol["VolumeId"]) == 21
    seen = wait_until(lambda: (v := describe(ec2, vol["VolumeId"]))["State"] == "available" and v, "available")
    assert (seen["Size"], seen["VolumeType"], seen["Iops"], seen["Throughput"]) == (20, "gp3", 4000, 250)
    assert (seen["Encrypted"], seen["KmsKeyId"], seen["AvailabilityZone"]) == (True, "alias/convoy", AZ)
    assert seen["Tags"] == [{"Key": "convoy:volume", "Value": "db"}]
    assert seen["Attachments"] == []
    # the volume's bytes: a sparse file of its size
    file = ec2lab.state_dir / "volumes" / f"{vol['VolumeId']}.img"
    assert file.stat().st_size == 20 * GIB and file.stat().st_blocks == 0

    io2 = ec2.create_volume(Size=10, AvailabilityZone=AZ, VolumeType="io2", Iops=5000)
    assert (io2["VolumeType"], io2["Iops"]) == ("io2", 5000)
    default = ec2.create_volume(Size=1, AvailabilityZone=AZ, Encrypted=True)
    assert default["VolumeType"] == "gp2" and default["KmsKeyId"].startswith("arn:aws:kms:us-east-1:")


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"VolumeType": "io1", "Size": 10}, "MissingParameter"),
        ({"VolumeType": "io2", "Size": 10}, "MissingParameter"),
        ({"VolumeType": "gp2", "Size": 10, "Throughput": 200}, "InvalidParameterCombination"),
        ({"VolumeType": "gp2", "Size": 10, "Iops": 3000}, "InvalidParameterCombination"),
        ({"VolumeType": "gp3", "Size": 17000}, "InvalidParameterValue"),
        ({"VolumeType": "st1", "Size": 10}, "InvalidParameterValue"),
        ({"VolumeType": "gp3", "Size": 1, "Iops": 4000}, "InvalidParameterValue"),  # over 500 IOPS per GiB
        ({"VolumeType": "gp3", "Size": 10, "Throughput": 2000}, "InvalidParameterValue"),
        ({"VolumeType": "fast", "Size": 10}, "InvalidParameterValue"),
        ({"Size": 10, "KmsKeyId": "alias/x"}, "InvalidParameterDependency"),
        ({"Size": 10, "AvailabilityZone": "us-east-1z"}, "InvalidParameterValue"),
        ({"SnapshotId": "snap-0123456789abcdef0"}, "InvalidSnapshot.NotFound"),
        ({}, "MissingParameter"),
    ],
)
def test_create_volume_refuses_what_aws_refuses(ec2lab, options, code):
    ec2 = ec2lab.client()
    assert error_code(ec2.create_volume, **{"AvailabilityZone": AZ, **options}) == code
    assert ec2.describe_volumes()["Volumes"] == []


def test_describe_volumes_filters_and_pages(ec2lab):
    ec2 = ec2lab.client()
    ids = [
        ec2.create_volume(
            Size=1,
            AvailabilityZone=AZ,
            TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "convoy:host", "Value": f"h{i % 2}"}]}],
        )["VolumeId"]
        for i in range(6)
    ]
    other = ec2.create_volume(Size=1, AvailabilityZone="us-east-1b")["VolumeId"]

    def ids_for(filters):
        return sorted(v["VolumeId"] for v in ec2.describe_volumes(Filters=filters)["Volumes"])

    assert ids_for([{"Name": "tag:convoy:host", "Values": ["h0"]}]) == sorted(ids[0::2])
    assert ids_for([{"Name": "tag-key", "Values": ["convoy:host"]}]) == sorted(ids)
    assert ids_for([{"Name": "tag:convoy:host", "Values": ["h*"]}]) == sorted(ids)
    assert ids_for([{"Name": "availability-zone", "Values": ["us-east-1b"]}]) == [other]
    wait_until(lambda: ids_for([{"Name": "status", "Values": ["available"]}]) == sorted([*ids, other]), "all available")

    first = ec2.describe_volumes(MaxResults=5)
    second = ec2.describe_volumes(MaxResults=5, NextToken=first["NextToken"])
    assert len(first["Volumes"]) == 5 and len(second["Volumes"]) == 2 and "NextToken" not in second
    paged = [
        v["VolumeId"]
        for page in ec2.get_paginator("describe_volumes").paginate(PaginationConfig={"PageSize": 5})
        for v in page["Volumes"]
    ]
    assert sorted(paged) == sorted([*ids, other])

    assert error_code(ec2.describe_volumes, VolumeIds=[ids[0]], MaxResults=5) == "InvalidParameterCombination"
    assert error_code(ec2.describe_volumes, MaxResults=2) == "InvalidParameterValue"
    assert error_code(ec2.describe_volumes, VolumeIds=["vol-0123456789abcdef0"]) == "InvalidVolume.NotFound"
    assert error_code(ec2.describe_volumes, VolumeIds=["disk-1"]) == "InvalidVolumeID.Malformed"
    assert error_code(ec2.describe_volumes, Filters=[{"Name": "colour", "Values": ["red"]}]) == "InvalidParameterValue"


def test_a_retried_create_with_its_client_token_makes_one_volume(ec2lab):
    ec2 = ec2lab.client()
    first = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, ClientToken="token-1")["VolumeId"]
    again = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, ClientToken="token-1")["VolumeId"]
    assert again == first and len(ec2.describe_volumes()["Volumes"]) == 1
    mismatch = error_code(ec2.create_volume, AvailabilityZone="us-east-1a", Size=2, ClientToken="token-1")
    assert mismatch == "IdempotentParameterMismatch"
    assert ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, ClientToken="token-2")["VolumeId"] != first


def test_snapshot_failures_on_demand_end_in_state_error_with_a_message(ec2lab):
    ec2 = ec2lab.client()
    ec2lab.admin.fail_snapshots()
    snapshot_id = ec2.create_snapshot(VolumeId=new_volume(ec2))["SnapshotId"]
    wait_until(lambda: ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"] == "error", "error")
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["StateMessage"]
    ec2.delete_snapshot(SnapshotId=snapshot_id)


def test_delete_volume(ec2lab):
    ec2 = ec2lab.client()
    volume_id = new_volume(ec2)
    attach(ec2, volume_id)
    assert error_code(ec2.delete_volume, VolumeId=volume_id) == "VolumeInUse"
    ec2.detach_volume(VolumeId=volume_id, InstanceId=INSTANCE_A)
    wait_until(lambda: detached(ec2, volume_id), "detached")
    ec2.delete_volume(VolumeId=volume_id)
    assert error_code(ec2.describe_volumes, VolumeIds=[volume_id]) == "InvalidVolume.NotFound"
    assert error_code(ec2.delete_volume, VolumeId=volume_id) == "InvalidVolume.NotFound"
    assert not (ec2lab.state_dir / "volumes" / f"{volume_id}.img").exists()


# --- AttachVolume / DetachVolume and the data plane ---------------------------------------------------------------------
def test_attach_shows_the_nvme_link_to_a_loop_device_and_detach_removes_both(ec2lab):
    ec2 = ec2lab.client()
    volume_id = new_volume(ec2, size=2)
    answer = ec2.attach_volume(VolumeId=volume_id, InstanceId=INSTANCE_A, Device="/dev/sdf")
    assert answer["State"] == "attaching"
    link = ec2lab.dev_root / "disk/by-id" / f"nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"
    assert link == ec2lab.link_for(volume_id)
    wait_until(lambda: describe(ec2, volume_id)["Attachments"][0]["State"] == "attached", "attached")
    loop = os.readlink(link)
    assert loop.startswith("/dev/loop") and device_size(link) == 2 * GIB
    assert dataplane.backing_file(loop) == str((ec2lab.state_dir / "volumes" / f"{volume_id}.img").resolve())
    assert describe(ec2, volume_id)["State"] == "in-use"
    mapping = ec2.describe_instances(InstanceIds=[INSTANCE_A])["Reservations"][0]["Instances"][0]["BlockDeviceMappings"]
    assert mapping == [{"DeviceName": "/dev/sdf", "Ebs": {**mapping[0]["Ebs"], "VolumeId": volume_id, "Status": "attached"}}]

    assert ec2.detach_volume(VolumeId=volume_id, InstanceId=INSTANCE_A)["State"] == "detaching"
    wait_until(lambda: detached(ec2, volume_id), "detached")
    assert not os.path.lexists(link)
    assert dataplane.backing_file(loop) is None or dataplane.loops_backed_under(ec2lab.state_dir) == []


def test_attach_refuses_what_aws_refuses(ec2lab):
    ec2 = ec2lab.client()
    first, second, elsewhere = new_volume(ec2), new_volume(ec2), new_volume(ec2, az="us-east-1b")
    attach(ec2, first)
    assert error_code(ec2.attach_volume, VolumeId=first, InstanceId=INSTANCE_B, Device="/dev/sdg") == "VolumeInUse"
    with pytest.raises(ClientError, match="already in use") as caught:
        ec2.attach_volume(VolumeId=second, InstanceId=INSTANCE_A, Device="/dev/sdf")
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert error_code(ec2.attach_volume, VolumeId=second, InstanceId="i-0ffffffffffffffff", Device="/dev/sdg") == (
        "InvalidInstanceID.NotFound"
    )
    assert error_code(ec2.attach_volume, VolumeId=second, InstanceId=INSTANCE_A, Device="/dev/nvme1") == "InvalidParameterValue"
    assert error_code(ec2.attach_volume, VolumeId=elsewhere, InstanceId=INSTANCE_A, Device="/dev/sdg") == (
        "InvalidVolume.ZoneMismatch"
    )
    ec2lab.admin.set_delays(create=30)
    creating = ec2.create_volume(Size=1, AvailabilityZone=AZ)["VolumeId"]
    assert error_code(ec2.attach_volume, VolumeId=creating, InstanceId=INSTANCE_A, Device="/dev/sdg") == "IncorrectState"
    # the same device name on another instance is fine
    attach(ec2, second, INSTANCE_B, "/dev/sdf")


def test_detach_refuses_what_aws_refuses(ec2lab):
    ec2 = ec2lab.client()
    volume_id = new_volume(ec2)
    assert error_code(ec2.detach_volume, VolumeId=volume_id, InstanceId=INSTANCE_A) == "IncorrectState"
    attach(ec2, volume_id)
    assert error_code(ec2.detach_volume, VolumeId=volume_id, InstanceId=INSTANCE_B) == "InvalidAttachment.NotFound"
    assert error_code(ec2.detach_volume, VolumeId=volume_id, InstanceId="i-0ffffffffffffffff") == "InvalidInstanceID.NotFound"
    ec2.detach_volume(VolumeId=volume_id)  # without InstanceId, as AWS allows
    wait_until(lambda: detached(ec2, volume_id), "detached")


def test_a_second_instance_sees_the_attachment_as_elsewhere(ec2lab):
    ec2_a, ec2_b = ec2lab.client(), ec2lab.client()
    volume_id = new_volume(ec2_a)
    attach(ec2_a, volume_id, INSTANCE_A)
    on_a = ec2_b.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [INSTANCE_A]}])["Volumes"]
    on_b = ec2_b.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [INSTANCE_B]}])["Volumes"]
    assert [v["VolumeId"] for v in on_a] == [volume_id] and on_b == []
    assert error_code(ec2_b.attach_volume, VolumeId=volume_id, InstanceId=INSTANCE_B, Device="/dev/sdf") == "VolumeInUse"
    instance_a = ec2_b.describe_instances(InstanceIds=[INSTANCE_A])["Reservations"][0]["Instances"][0]
    assert instance_a["State"]["Name"] == "running" and instance_a["Placement"]["AvailabilityZone"] == AZ


def test_detach_waits_for_unmount_and_force_detaches_anyway(ec2lab, tmp_path):
    ec2 = ec2lab.client()
    volume_id = new_volume(ec2)
    attach(ec2, volume_id)
    link = ec2lab.link_for(volume_id)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(link)], check=True, timeout=60)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    subprocess.run(["mount", str(link), str(mountpoint)], check=True, timeout=60)
    try:
        ec2.detach_volume(VolumeId=volume_id, InstanceId=INSTANCE_A)
        time.sleep(ec2lab.delays["detach"] + 0.5)
        assert describe(ec2, volume_id)["Attachments"][0]["State"] == "detaching"  # held by the mount
        assert os.path.islink(link)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True, timeout=60)
    wait_until(lambda: detached(ec2, volume_id), "detached after unmount")
    assert not os.path.lexists(link)

    attach(ec2, volume_id)
    subprocess.run(["mount", str(link), str(mountpoint)], check=True, timeout=60)
    try:
        ec2.detach_volume(VolumeId=volume_id, InstanceId=INSTANCE_A, Force=True)
        wait_until(lambda: detached(ec2, volume_id), "force-detached while mounted")
        assert not os.path.lexists(link)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True, timeout=60)
    wait_until(lambda: dataplane.loops_backed_under(ec2lab.state_dir) == [], "the loop device gone once unmounted")


def test_xen_instances_show_the_xvd_name_and_foreign_paths_are_never_replaced(ec2lab):
    ec2 = ec2lab.client()
    ec2lab.add_instance("i-0c000000000000003", platform="xen")
    volume_id, other = new_volume(ec2), new_volume(ec2)
    attach(ec2, volume_id, "i-0c000000000000003", "/dev/sdg")
    xvdg = ec2lab.dev_root / "xvdg"
    assert os.readlink(xvdg).startswith("/dev/loop") and ec2lab.link_for(volume_id, "i-0c000000000000003", "/dev/sdg") == xvdg
    foreign = ec2lab.dev_root / "xvdh"
    foreign.write_text("not the emulator's")
    with pytest.raises(ClientError, match="not the emulator's"):
        ec2.attach_volume(VolumeId=other, InstanceId="i-0c000000000000003", Device="/dev/sdh")
    assert foreign.read_text() == "not the emulator's"
    ec2.detach_volume(VolumeId=volume_id, InstanceId="i-0c000000000000003")
    wait_until(lambda: detached(ec2, volume_id), "detached")
    assert not os.path.lexists(xvdg)


# --- snapshots, volumes from snapshots, ModifyVolume, tags ------------------------------------------------------------
def test_data_on_the_device_is_in_the_snapshot_and_in_a_volume_made_from_it(ec2lab):
    ec2 = ec2lab.client()
    volume_id = new_volume(ec2)
    attach(ec2, volume_id)
    payload = os.urandom(4096)
    fd = os.open(ec2lab.link_for(volume_id), os.O_WRONLY)
    try:
        os.pwrite(fd, payload, 512 * 1024 * 1024)
        os.fsync(fd)
    finally:
        os.close(fd)
    snap = ec2.create_snapshot(
        VolumeId=volume_id,
        Description="before upgrade",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "convoy:snapshot", "Value": "s1"}]}],
    )
    assert snap["State"] == "pending" and snap["Progress"].endswith("%")
    assert error_code(ec2.create_volume, SnapshotId=snap["SnapshotId"], AvailabilityZone=AZ) == "IncorrectState"
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap["SnapshotId"]], WaiterConfig={"Delay": 1, "MaxAttempts": WAIT})
    done = ec2.describe_snapshots(SnapshotIds=[snap["SnapshotId"]])["Snapshots"][0]
    assert (done["Progress"], done["VolumeSize"], done["Description"]) == ("100%", 1, "before upgrade")

    assert error_code(ec2.create_volume, SnapshotId=snap["SnapshotId"], Size=1, AvailabilityZone=AZ, VolumeType="st1") == (
        "InvalidParameterValue"
    )
    clone = ec2.create_volume(SnapshotId=snap["SnapshotId"], Size=3, AvailabilityZone=AZ)
    assert (clone["SnapshotId"], clone["Size"]) == (snap["SnapshotId"], 3)
    wait_until(lambda: describe(ec2, clone["VolumeId"])["State"] == "available", "clone available")
    attach(ec2, clone["VolumeId"], INSTANCE_B)
    clone_link = ec2lab.link_for(clone["VolumeId"])
    assert device_size(clone_link) == 3 * GIB
    with open(clone_link, "rb") as device:
        device.seek(512 * 1024 * 1024)
        assert device.read(4096) == payload
    same_size = ec2.create_volume(SnapshotId=snap["SnapshotId"], AvailabilityZone=AZ)
    assert same_size["Size"] == 1


def test_snapshot_filters_owner_tags_and_delete(ec2lab):
    ec2 = ec2lab.client()
    first, second = new_volume(ec2), new_volume(ec2)
    tagged = [{"ResourceType": "snapshot", "Tags": [{"Key": "convoy:host", "Value": "a"}]}]
    s1 = ec2.create_snapshot(VolumeId=first, TagSpecifications=tagged)["SnapshotId"]
    s2 = ec2.create_snapshot(VolumeId=second)["SnapshotId"]

    def ids(**kwargs):
        return sorted(s["SnapshotId"] for s in ec2.describe_snapshots(**kwargs)["Snapshots"])

    assert ids(OwnerIds=["self"]) == sorted([s1, s2])
    assert ids(OwnerIds=["amazon"]) == []
    assert ids(Filters=[{"Name": "tag:convoy:host", "Values": ["a"]}]) == [s1]
    assert ids(Filters=[{"Name": "volume-id", "Values": [second]}]) == [s2]
    wrong_kind = [{"ResourceType": "volume", "Tags": [{"Key": "k", "Value": "v"}]}]
    assert error_code(ec2.create_snapshot, VolumeId=first, TagSpecifications=wrong_kind) == "InvalidParameterValue"
    assert error_code(ec2.create_snapshot, VolumeId="vol-0123456789abcdef0") == "InvalidVolume.NotFound"
    ec2.delete_snapshot(SnapshotId=s1)
    assert ids() == [s2]
    assert error_code(ec2.delete_snapshot, SnapshotId=s1) == "InvalidSnapshot.NotFound"
    assert error_code(ec2.describe_snapshots, SnapshotIds=[s1]) == "InvalidSnapshot.NotFound"


def test_create_and_delete_tags(ec2lab):
    ec2 = ec2lab.client()
    volume_id = new_volume(ec2)
    snapshot_id = ec2.create_snapshot(VolumeId=volume_id)["SnapshotId"]
    ec2.create_tags(Resources=[volume_id, snapshot_id], Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    assert describe(ec2, volume_id)["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    ec2.delete_tags(Resources=[volume_id], Tags=[{"Key": "a", "Value": "other"}])  # a value that does not match: kept
    ec2.delete_tags(Resources=[volume_id], Tags=[{"Key": "b"}])
    assert describe(ec2, volume_id)["Tags"] == [{"Key": "a", "Value": "1"}]
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["Tags"][0] == {"Key": "a", "Value": "1"}
    code = error_code(ec2.create_tags, Resources=["vol-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "1"}])
    assert code == "InvalidVolume.NotFound"


def test_modify_volume_grows_the_attached_device(ec2lab):
    ec2 = ec2lab.client()
    volume_id = new_volume(ec2, VolumeType="gp3")
    attach(ec2, volume_id)
    link = ec2lab.link_for(volume_id)
    assert error_code(ec2.describe_volumes_modifications, VolumeIds=[volume_id]) == "InvalidVolumeModification.NotFound"
    answer = ec2.modify_volume(VolumeId=volume_id, Size=10, Iops=4000)["VolumeModification"]
    assert (answer["ModificationState"], answer["OriginalSize"], answer["TargetSize"]) == ("modifying", 1, 10)
    assert error_code(ec2.modify_volume, VolumeId=volume_id, Size=12) == "IncorrectModificationState"

    def state():
        return ec2.describe_volumes_modifications(VolumeIds=[volume_id])["VolumesModifications"][0]["ModificationState"]

    seen = {state()}
    wait_until(lambda: seen.add(state()) or "completed" in seen, "modification completed")
    assert "optimizing" in seen or "modifying" in seen
    subprocess.run(["losetup", "-c", os.readlink(link)], check=True, timeout=60)
    assert device_size(link) == 10 * GIB
    grown = describe(ec2, volume_id)
    assert (grown["Size"], grown["Iops"]) == (10, 4000)

    assert error_code(ec2.modify_volume, VolumeId=volume_id, Size=5) == "InvalidParameterValue"
    assert error_code(ec2.modify_volume, VolumeId=volume_id, VolumeType="gp2", Throughput=300) == "InvalidParameterCombination"
    assert error_code(ec2.modify_volume, VolumeId=volume_id, VolumeType="io2") == "MissingParameter"
    ec2.modify_volume(VolumeId=volume_id, VolumeType="gp2")  # gp3's IOPS and throughput do not carry over to gp2
    wait_until(lambda: state() == "completed", "type change completed")
    assert describe(ec2, volume_id)["VolumeType"] == "gp2"


def test_describe_availability_zones_and_instances(ec2lab):
    ec2 = ec2lab.client()
    zones = ec2.describe_availability_zones()["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert {z["State"] for z in zones} == {"available"} and zones[0]["RegionName"] == "us-east-1"
    instances = [r["Instances"][0] for r in ec2.describe_instances()["Reservations"]]
    assert sorted(i["InstanceId"] for i in instances) == [INSTANCE_A, INSTANCE_B]
    assert error_code(ec2.describe_instances, InstanceIds=["i-0ffffffffffffffff"]) == "InvalidInstanceID.NotFound"
    request = urllib.request.Request(ec2lab.endpoint, data=b"Action=LaunchRockets&Version=2016-11-15", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400 and b"<Code>InvalidAction</Code>" in caught.value.read()


# --- faults ---------------------------------------------------------------------------------------------------------------
def test_throttling_is_retried_by_boto3_then_succeeds(ec2lab):
    ec2 = ec2lab.client(retries={"mode": "standard", "max_attempts": 5})
    ec2lab.admin.throttle(2)
    answer = ec2.describe_volumes()
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert ec2lab.admin.calls()[-3:] == ["DescribeVolumes"] * 3
    ec2lab.admin.throttle(10)
    impatient = ec2lab.client(retries={"mode": "standard", "max_attempts": 2})
    with pytest.raises(ClientError) as caught:
        impatient.describe_volumes()
    assert caught.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    ec2lab.admin.clear_faults()
    ec2.describe_volumes()


def test_an_attach_that_never_completes(ec2lab):
    ec2 = ec2lab.client()
    stuck, later = new_volume(ec2), new_volume(ec2)
    ec2lab.admin.stick_attach(stuck)
    ec2.attach_volume(VolumeId=stuck, InstanceId=INSTANCE_A, Device="/dev/sdf")
    time.sleep(ec2lab.delays["attach"] + 0.5)
    assert describe(ec2, stuck)["Attachments"][0]["State"] == "attaching"
    assert not os.path.lexists(ec2lab.link_for(stuck))
    assert ec2lab.admin.state()["faults"]["stuck_attach_volumes"] == [stuck]
    ec2.detach_volume(VolumeId=stuck, InstanceId=INSTANCE_A, Force=True)
    wait_until(lambda: detached(ec2, stuck), "the stuck attachment force-detached")

    ec2lab.admin.stick_attach()  # every volume
    ec2.attach_volume(VolumeId=later, InstanceId=INSTANCE_A, Device="/dev/sdg")
    time.sleep(ec2lab.delays["attach"] + 0.3)
    assert describe(ec2, later)["Attachments"][0]["State"] == "attaching"
    ec2lab.admin.stick_attach(stuck=False)
    wait_until(lambda: describe(ec2, later)["Attachments"][0]["State"] == "attached", "attached once unstuck")


def test_an_instance_that_stops_while_holding_a_volume(ec2lab):
    ec2 = ec2lab.client()
    volume_id = new_volume(ec2)
    attach(ec2, volume_id, INSTANCE_A)
    ec2lab.admin.set_delays(detach=0.1)
    ec2lab.admin.stop_instance(INSTANCE_A)
    instance = ec2.describe_instances(InstanceIds=[INSTANCE_A])["Reservations"][0]["Instances"][0]
    assert instance["State"] == {"Code": 80, "Name": "stopped"}
    assert instance["BlockDeviceMappings"][0]["Ebs"]["VolumeId"] == volume_id  # still attached, as on AWS
    stopped = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["stopped"]}])["Reservations"]
    assert [r["Instances"][0]["InstanceId"] for r in stopped] == [INSTANCE_A]
    # the other host takes the volume over
    ec2.detach_volume(VolumeId=volume_id, InstanceId=INSTANCE_A, Force=True)
    wait_until(lambda: detached(ec2, volume_id), "force-detached from the stopped instance")
    attach(ec2, volume_id, INSTANCE_B)
    ec2lab.admin.start_instance(INSTANCE_A)
    assert ec2.describe_instances(InstanceIds=[INSTANCE_A])["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"


# --- IMDS and restarts ----------------------------------------------------------------------------------------------------
class InstanceIdFetcher(IMDSFetcher):
    """What a driver does with botocore's IMDSv2 client: a token, then the instance id."""

    def instance_id(self) -> str:
        token = self._fetch_metadata_token()
        return self._get_request("latest/meta-data/instance-id", None, token).text


def test_botocore_reads_instance_id_region_and_role_from_imds(ec2lab, monkeypatch, tmp_path):
    import boto3

    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_PROFILE",
        "AWS_EC2_METADATA_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for instance_id in (INSTANCE_A, INSTANCE_B):
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", ec2lab.imds_endpoint(instance_id))
        session = boto3.Session()
        botocore_session = session._session
        endpoint = botocore_session.get_config_variable("ec2_metadata_service_endpoint")
        assert endpoint == ec2lab.imds_endpoint(instance_id)
        assert InstanceIdFetcher(config={"ec2_metadata_service_endpoint": endpoint}).instance_id() == instance_id
        assert IMDSRegionProvider(botocore_session).provide() == "us-east-1"
        credentials = session.get_credentials()
        assert credentials is not None and credentials.method == "iam-role"

    base = ec2lab.imds_endpoint(INSTANCE_A)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(base + "latest/meta-data/instance-id", timeout=10)
    assert caught.value.code == 401
    put = urllib.request.Request(base + "latest/api/token", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(put, timeout=10)
    assert caught.value.code == 400  # no TTL header
    put.add_header("X-aws-ec2-metadata-token-ttl-seconds", "60")
    token = urllib.request.urlopen(put, timeout=10).read().decode()
    get = urllib.request.Request(base + "latest/dynamic/instance-identity/document", headers={"X-aws-ec2-metadata-token": token})
    document = json.loads(urllib.request.urlopen(get, timeout=10).read())
    assert (document["instanceId"], document["region"], document["availabilityZone"]) == (INSTANCE_A, "us-east-1", AZ)


def test_a_restart_keeps_volumes_snapshots_and_attachments(ec2lab):
    ec2 = ec2lab.client()
    volume_id, spare = new_volume(ec2), new_volume(ec2, size=2)
    attach(ec2, volume_id)
    snapshot_id = ec2.create_snapshot(VolumeId=volume_id)["SnapshotId"]
    ec2.create_tags(Resources=[spare], Tags=[{"Key": "keep", "Value": "me"}])
    link = ec2lab.link_for(volume_id)
    loop = os.readlink(link)

    ec2lab.restart()
    assert describe(ec2, volume_id)["Attachments"][0]["State"] == "attached"
    assert describe(ec2, spare)["Tags"] == [{"Key": "keep", "Value": "me"}]
    assert os.readlink(link) == loop
    wait_until(lambda: ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"] == "completed", "snapshot")

    ec2lab.kill()  # kill -9: what every call saved is all there is
    ec2lab.start()
    ec2.detach_volume(VolumeId=volume_id, InstanceId=INSTANCE_A)
    wait_until(lambda: detached(ec2, volume_id), "detached after restart")
    assert not os.path.lexists(link)
    assert sorted(v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]) == sorted([volume_id, spare])


def test_ebs_direct_apis_list_the_blocks_a_snapshot_holds_and_those_changed(ec2lab):
    ec2 = ec2lab.client()
    direct = boto3.client(
        "ebs", endpoint_url=ec2lab.endpoint, region_name=ec2lab.region, aws_access_key_id="x", aws_secret_access_key="x"
    )
    volume_id = new_volume(ec2)
    attach(ec2, volume_id)
    block = 512 * 1024

    def write_block(index: int) -> None:
        fd = os.open(ec2lab.link_for(volume_id), os.O_WRONLY)
        try:
            os.pwrite(fd, os.urandom(block), index * block)
            os.fsync(fd)
        finally:
            os.close(fd)

    def snapshot() -> str:
        snap = ec2.create_snapshot(VolumeId=volume_id)["SnapshotId"]
        ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig={"Delay": 1, "MaxAttempts": WAIT})
        return snap

    write_block(3)
    write_block(100)
    first = snapshot()
    write_block(100)  # rewritten
    write_block(7)  # new
    second = snapshot()
    held = direct.list_snapshot_blocks(SnapshotId=first)
    assert [b["BlockIndex"] for b in held["Blocks"]] == [3, 100] and held["BlockSize"] == block
    changed = direct.list_changed_blocks(FirstSnapshotId=first, SecondSnapshotId=second)
    assert [b["BlockIndex"] for b in changed["ChangedBlocks"]] == [7, 100]
    paged = direct.list_changed_blocks(FirstSnapshotId=first, SecondSnapshotId=second, MaxResults=100, StartingBlockIndex=8)
    assert [b["BlockIndex"] for b in paged["ChangedBlocks"]] == [100]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        direct.list_snapshot_blocks(SnapshotId="snap-0000000000000dead")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
