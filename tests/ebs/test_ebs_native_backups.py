"""`convoy backup create SNAP --dest ebs://`: the EBS snapshot itself is the backup (Convoy's ebs://REGION/snap-... URLs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon_harness import cli_json

pytestmark = pytest.mark.needs_root




def test_an_ebs_backup_outlives_its_snapshot_and_restores_through_the_cli_and_docker(ebs_host, ec2lab):
    host = ebs_host()
    host.docker_ok("Create", {"Name": "src", "Opts": {"size": "1G"}})
    mountpoint = host.docker_ok("Mount", {"Name": "src", "ID": "c1"})["Mountpoint"]
    Path(mountpoint, "f").write_text("kept by EBS")
    host.docker_ok("Unmount", {"Name": "src", "ID": "c1"})
    snapshot = host.cli("snapshot", "create", "src", check=True).stdout.strip()
    url = host.cli("backup", "create", snapshot, "--dest", "ebs://", check=True).stdout.strip()
    snapshot_id = cli_json(host, "snapshot", "inspect", snapshot)["details"]["snapshot_id"]
    assert url == f"ebs://us-east-1/{snapshot_id}"

    host.cli("snapshot", "delete", snapshot, check=True)  # the backup stays
    assert ec2lab.client().describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    listed = cli_json(host, "backup", "list", "ebs://")
    assert [(row["url"], row["volume"]) for row in listed] == [(url, "src")]
    assert cli_json(host, "backup", "inspect", url)["name"] == snapshot_id

    host.cli("create", "from-cli", "--backup", url, check=True)
    host.docker_ok("Create", {"Name": "from-docker", "Opts": {"backup": url}})
    host.docker_ok("Create", {"Name": "from-docker", "Opts": {"backup": url}})  # Docker retries: idempotent
    for name in ("from-cli", "from-docker"):
        restored = host.docker_ok("Mount", {"Name": name, "ID": "c1"})["Mountpoint"]
        assert Path(restored, "f").read_text() == "kept by EBS"
        host.docker_ok("Unmount", {"Name": name, "ID": "c1"})

    host.cli("backup", "delete", url, check=True)
    assert not ec2lab.client().describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"]


@pytest.mark.parametrize(
    "url, message",
    [
        ("ebs://us-west-2/snap-0123456789abcdef0", "is in us-west-2, this instance in us-east-1: copy it here first"),
        ("ebs://us-east-1/vol-0123", "is not an EBS backup URL: use ebs://REGION/snap-..."),
    ],
)
def test_a_wrong_ebs_backup_url_is_refused_naming_what_to_do(ebs_host, url, message):
    host = ebs_host()
    result = host.cli("create", "never", "--backup", url)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert host.cli("inspect", "never").returncode != 0
