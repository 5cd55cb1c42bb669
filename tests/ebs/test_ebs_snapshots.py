"""EBS snapshots take minutes on AWS: the user sees their progress, and a failed or slow one is handled."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.daemon_harness import wait_until

pytestmark = pytest.mark.needs_root


def ebs_snapshots_of(ec2lab, volume: str) -> list[dict]:
    found = ec2lab.client().describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:convoy:volume", "Values": [volume]}])
    return found["Snapshots"]


def inspect_snapshot(host, name: str) -> dict | None:
    result = host.cli("snapshot", "inspect", name, "--json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def start_snapshot(host, volume: str, name: str) -> tuple[threading.Thread, dict]:
    """`convoy snapshot create` in the background, once it shows in the catalog as pending: (thread, its result)."""
    created: dict = {}
    creating = threading.Thread(target=lambda: created.update(r=host.cli("snapshot", "create", volume, "--name", name)))
    creating.start()
    assert wait_until(lambda: inspect_snapshot(host, name) is not None, 10), "the snapshot shows before it completes"
    return creating, created


def test_snapshot_inspect_shows_progress_while_ec2_copies_it(ebs_host, ec2lab):
    host = ebs_host()
    host.docker_ok("Create", {"Name": "big", "Opts": {"size": "1G"}})
    ec2lab.admin.set_delays(snapshot=4)
    creating, created = start_snapshot(host, "big", "s1")
    shown = inspect_snapshot(host, "s1")
    creating.join(60)
    assert shown is not None and shown["state"] == "pending", shown
    assert shown["progress"].endswith("%") and int(shown["progress"].rstrip("%")) < 100, shown
    assert created["r"].returncode == 0, created["r"].stderr
    done = inspect_snapshot(host, "s1")
    assert done is not None and done["details"]["state"] == "completed" and "progress" not in done, done
    assert [s["State"] for s in ebs_snapshots_of(ec2lab, "big")] == ["completed"]


def test_a_snapshot_ec2_gives_up_on_is_reported_and_leaves_nothing(ebs_host, ec2lab):
    host = ebs_host()
    host.docker_ok("Create", {"Name": "doomed", "Opts": {"size": "1G"}})
    ec2lab.admin.fail_snapshots()
    result = host.cli("snapshot", "create", "doomed", "--name", "s1")
    assert result.returncode != 0 and "gave up" in result.stderr and "take the snapshot again" in result.stderr, result.stderr
    assert json.loads(host.cli("snapshot", "list", "--json", check=True).stdout) == []
    assert ebs_snapshots_of(ec2lab, "doomed") == [], "the failed EBS snapshot is deleted, not left to cost money"


def test_a_snapshot_left_pending_by_a_killed_daemon_completes_before_its_backup(ebs_host, ec2lab):
    host = ebs_host()
    host.docker_ok("Create", {"Name": "vol", "Opts": {"size": "1G"}})
    ec2lab.admin.set_delays(snapshot=4)
    creating, _ = start_snapshot(host, "vol", "s1")
    host.kill9()  # while it waits for EC2
    creating.join(60)
    host.start()
    left = inspect_snapshot(host, "s1")
    assert left is not None and left["details"]["state"] == "pending", left
    url = host.cli("backup", "create", "s1", "--dest", "ebs://", check=True).stdout.strip()
    assert url.startswith("ebs://") and [s["State"] for s in ebs_snapshots_of(ec2lab, "vol")] == ["completed"]
    done = inspect_snapshot(host, "s1")
    assert done is not None and done["details"]["state"] == "completed", done


def test_a_create_past_its_deadline_says_to_create_again_and_that_takes_the_same_volume(ebs_host, ec2lab):
    host = ebs_host("i-0a000000000000001", "host-a", "--driver-opts", "ebs.create_timeout=1")
    ec2lab.admin.set_delays(create=4)
    status, data = host.docker("Create", {"Name": "slow", "Opts": {"size": "1G"}})
    assert status != 200 and "create slow again" in data["Err"], data
    time.sleep(4)
    host.docker_ok("Create", {"Name": "slow", "Opts": {"size": "1G"}})
    tagged = ec2lab.client().describe_volumes(Filters=[{"Name": "tag:convoy:volume", "Values": ["slow"]}])["Volumes"]
    assert [v["State"] for v in tagged] == ["available"], "one EBS volume, not two"
    assert json.loads(host.cli("inspect", "slow", "--json", check=True).stdout)["backend"]["volume_id"] == tagged[0]["VolumeId"]
