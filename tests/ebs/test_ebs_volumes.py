"""The ebs back-end against the EC2 emulator: the same driver code as on AWS, only the endpoint differs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon_harness import cli_json, mounted_points
from tests.ebs.conftest import INSTANCE_A, INSTANCE_B

pytestmark = pytest.mark.needs_root




def described(ec2lab, volume_id: str) -> dict:
    return ec2lab.client().describe_volumes(VolumeIds=[volume_id])["Volumes"][0]


def attached_to(ec2lab, volume_id: str) -> list[str]:
    return [a["InstanceId"] for a in described(ec2lab, volume_id)["Attachments"] if a["State"] == "attached"]


def test_create_with_options_write_and_read_back_in_a_new_mount(ebs_host, ec2lab):
    host = ebs_host()
    host.docker_ok("Create", {"Name": "db", "Opts": {"size": "20G", "type": "gp3", "iops": "4000", "throughput": "250"}})
    volume_id = cli_json(host, "inspect", "db")["backend"]["volume_id"]
    volume = described(ec2lab, volume_id)
    assert (volume["Size"], volume["VolumeType"], volume["Iops"], volume["Throughput"]) == (20, "gp3", 4000, 250)
    assert volume["Encrypted"] is True, "encrypted by default"
    tags = {t["Key"]: t["Value"] for t in volume["Tags"]}
    assert tags.get("convoy:volume") == "db" and tags.get("convoy:host") == INSTANCE_A, volume["Tags"]

    mountpoint = host.docker_ok("Mount", {"Name": "db", "ID": "c1"})["Mountpoint"]
    assert attached_to(ec2lab, volume_id) == [INSTANCE_A]
    Path(mountpoint, "row").write_text("persisted on EBS")
    host.docker_ok("Unmount", {"Name": "db", "ID": "c1"})
    assert attached_to(ec2lab, volume_id) == [], "detached when no container uses it"
    mountpoint = host.docker_ok("Mount", {"Name": "db", "ID": "c2"})["Mountpoint"]
    assert Path(mountpoint, "row").read_text() == "persisted on EBS"
    host.docker_ok("Unmount", {"Name": "db", "ID": "c2"})


def test_wrong_options_are_refused_before_any_aws_call(ebs_host, ec2lab):
    host = ebs_host()
    before = [c for c in ec2lab.admin.calls() if c == "CreateVolume"]
    for opts, message in (
        ({"type": "io2"}, "needs iops"),
        ({"type": "gp2", "throughput": "250"}, "throughput is only settable on gp3"),
        ({"size": "20000G"}, "outside what a gp3 volume can be"),
    ):
        status, data = host.docker("Create", {"Name": "bad", "Opts": opts})
        assert status != 200 and message in data["Err"], data
    assert [c for c in ec2lab.admin.calls() if c == "CreateVolume"] == before


def test_adopt_by_id_and_create_from_a_snapshot(ebs_host, ec2lab):
    host = ebs_host()
    made = ec2lab.client().create_volume(AvailabilityZone="us-east-1a", Size=2, VolumeType="gp3")
    ec2lab.client().get_waiter("volume_available").wait(VolumeIds=[made["VolumeId"]], WaiterConfig={"Delay": 1})
    host.docker_ok("Create", {"Name": "old", "Opts": {"id": made["VolumeId"]}})
    assert cli_json(host, "inspect", "old")["size"] == 2 << 30
    mountpoint = host.docker_ok("Mount", {"Name": "old", "ID": "c1"})["Mountpoint"]
    Path(mountpoint, "f").write_text("in the adopted volume")
    host.docker_ok("Unmount", {"Name": "old", "ID": "c1"})

    snapshot = cli_json(host, "snapshot", "create", "old")
    snapshot_id = snapshot["details"]["snapshot_id"]
    host.docker_ok("Create", {"Name": "clone", "Opts": {"snapshot": snapshot_id}})
    mountpoint = host.docker_ok("Mount", {"Name": "clone", "ID": "c1"})["Mountpoint"]
    assert Path(mountpoint, "f").read_text() == "in the adopted volume"
    host.docker_ok("Unmount", {"Name": "clone", "ID": "c1"})


def test_a_second_instance_lists_the_volume_and_is_refused_while_a_running_instance_holds_it(ebs_host, ec2lab):
    host_a = ebs_host(INSTANCE_A, "host-a")
    host_b = ebs_host(INSTANCE_B, "host-b", "--shared-refresh", "0.5")
    host_a.docker_ok("Create", {"Name": "shared", "Opts": {"size": "1G"}})
    mountpoint = host_a.docker_ok("Mount", {"Name": "shared", "ID": "a1"})["Mountpoint"]
    Path(mountpoint, "from-a").write_text("A")
    assert host_b.docker_ok("Get", {"Name": "shared"})["Volume"]["Name"] == "shared"
    status, data = host_b.docker("Mount", {"Name": "shared", "ID": "b1"})
    assert status != 200 and INSTANCE_A in data["Err"] and "running" in data["Err"], data
    host_a.docker_ok("Unmount", {"Name": "shared", "ID": "a1"})
    mountpoint = host_b.docker_ok("Mount", {"Name": "shared", "ID": "b1"})["Mountpoint"]
    assert Path(mountpoint, "from-a").read_text() == "A", "the volume followed to the other instance"
    host_b.docker_ok("Unmount", {"Name": "shared", "ID": "b1"})


def test_a_stopped_instance_lets_go_only_with_force_detach(ebs_host, ec2lab):
    host_a = ebs_host(INSTANCE_A, "host-a")
    host_a.docker_ok("Create", {"Name": "stuck", "Opts": {"size": "1G"}})
    volume_id = cli_json(host_a, "inspect", "stuck")["backend"]["volume_id"]
    mountpoint = host_a.docker_ok("Mount", {"Name": "stuck", "ID": "a1"})["Mountpoint"]
    Path(mountpoint, "f").write_text("before the stop")
    host_a.kill9()  # the instance dies with the volume attached and mounted
    ec2lab.admin.stop_instance(INSTANCE_A)
    host_b = ebs_host(INSTANCE_B, "host-b")
    status, data = host_b.docker("Mount", {"Name": "stuck", "ID": "b1"})
    assert status != 200 and INSTANCE_A in data["Err"] and "force_detach" in data["Err"], data
    host_b.stop()
    host_b = ebs_host(INSTANCE_B, "host-b2", "--driver-opts", "ebs.force_detach=true")
    mountpoint = host_b.docker_ok("Mount", {"Name": "stuck", "ID": "b1"})["Mountpoint"]
    assert attached_to(ec2lab, volume_id) == [INSTANCE_B]
    assert "force-detaching" in host_b.log_text() and INSTANCE_A in host_b.log_text()
    host_b.docker_ok("Unmount", {"Name": "stuck", "ID": "b1"})


def test_kill_9_with_a_volume_attached_and_mounted_recovers_it_once(ebs_host, ec2lab):
    host = ebs_host()
    host.docker_ok("Create", {"Name": "held", "Opts": {"size": "1G"}})
    volume_id = cli_json(host, "inspect", "held")["backend"]["volume_id"]
    mountpoint = host.docker_ok("Mount", {"Name": "held", "ID": "c1"})["Mountpoint"]
    for _ in range(3):
        host.kill9()
        host.start()
        host.wait_ready()
        assert attached_to(ec2lab, volume_id) == [INSTANCE_A]
        assert sum(1 for p in [mountpoint] if p in mounted_points()) == 1
    host.docker_ok("Unmount", {"Name": "held", "ID": "c1"})
    assert attached_to(ec2lab, volume_id) == []


def test_an_ebs_snapshot_backs_up_to_a_store_and_restores_into_ebs_and_vfs(ebs_host, ec2lab, tmp_path):
    host = ebs_host(INSTANCE_A, "host-a", "--drivers", "vfs")
    store = f"vfs://{tmp_path / 'store'}"
    host.docker_ok("Create", {"Name": "src", "Opts": {"size": "1G", "driver": "ebs"}})
    mountpoint = host.docker_ok("Mount", {"Name": "src", "ID": "c1"})["Mountpoint"]
    Path(mountpoint, "data").write_bytes(b"x" * (3 << 20))
    host.docker_ok("Unmount", {"Name": "src", "ID": "c1"})
    snapshot = host.cli("snapshot", "create", "src", check=True).stdout.strip()
    url = host.cli("backup", "create", snapshot, "--dest", store, check=True).stdout.strip()
    assert cli_json(host, "backup", "inspect", url)["source"] == "image"
    for driver in ("ebs", "vfs"):
        host.cli("create", f"back-{driver}", "--backup", url, "--driver", driver, check=True)
        restored = host.docker_ok("Mount", {"Name": f"back-{driver}", "ID": "c1"})["Mountpoint"]
        assert Path(restored, "data").read_bytes() == b"x" * (3 << 20)
        host.docker_ok("Unmount", {"Name": f"back-{driver}", "ID": "c1"})
    temporaries = [v for v in ec2lab.client().describe_volumes()["Volumes"]
                   if any(t["Key"] == "convoy:temporary" for t in v.get("Tags", []))]
    assert temporaries == [], "the volume made to read the snapshot is deleted"


def test_convoy_delete_detaches_and_deletes_the_ebs_volume_and_docker_remove_keeps_it(ebs_host, ec2lab):
    host = ebs_host()
    for name in ("kept", "gone"):
        host.docker_ok("Create", {"Name": name, "Opts": {"size": "1G"}})
    kept = cli_json(host, "inspect", "kept")["backend"]["volume_id"]
    gone = cli_json(host, "inspect", "gone")["backend"]["volume_id"]
    host.docker_ok("Remove", {"Name": "kept"})
    assert described(ec2lab, kept)["State"] == "available", "Docker's remove keeps data that lives outside the host"
    host.cli("delete", "gone", check=True)
    assert not ec2lab.client().describe_volumes(Filters=[{"Name": "volume-id", "Values": [gone]}])["Volumes"]
