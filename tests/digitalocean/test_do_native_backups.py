"""`convoy backup create SNAP --dest do://`: the DO volume snapshot itself is the backup (do://REGION/SNAPSHOT_ID)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon_harness import cli_json

pytestmark = pytest.mark.needs_root


def test_a_do_backup_outlives_its_snapshot_and_restores_through_the_cli_and_docker(do_host, dolab):
    host = do_host()
    host.docker_ok("Create", {"Name": "src", "Opts": {"size": "1G"}})
    mountpoint = host.docker_ok("Mount", {"Name": "src", "ID": "c1"})["Mountpoint"]
    Path(mountpoint, "f").write_text("kept by DigitalOcean")
    snapshot = host.cli("snapshot", "create", "src", check=True).stdout.strip()  # taken while mounted: frozen
    host.docker_ok("Unmount", {"Name": "src", "ID": "c1"})
    url = host.cli("backup", "create", snapshot, "--dest", "do://", check=True).stdout.strip()
    snapshot_id = cli_json(host, "snapshot", "inspect", snapshot)["details"]["snapshot_id"]
    assert url == f"do://nyc3/{snapshot_id}"

    host.cli("snapshot", "delete", snapshot, check=True)  # the backup stays
    assert dolab.api("GET", f"/v2/snapshots/{snapshot_id}")[0] == 200
    listed = cli_json(host, "backup", "list", "do://")
    assert [(row["url"], row["volume"]) for row in listed] == [(url, "src")]
    assert cli_json(host, "backup", "inspect", url)["name"] == snapshot_id

    host.cli("create", "from-cli", "--backup", url, check=True)
    host.docker_ok("Create", {"Name": "from-docker", "Opts": {"backup": url}})
    host.docker_ok("Create", {"Name": "from-docker", "Opts": {"backup": url}})  # Docker retries: idempotent
    for name in ("from-cli", "from-docker"):
        restored = host.docker_ok("Mount", {"Name": name, "ID": "c1"})["Mountpoint"]
        assert Path(restored, "f").read_text() == "kept by DigitalOcean"
        host.docker_ok("Unmount", {"Name": name, "ID": "c1"})

    host.cli("backup", "delete", url, check=True)
    assert dolab.api("GET", f"/v2/snapshots/{snapshot_id}")[0] == 404


def test_a_do_snapshot_backs_up_to_s3_and_restores_into_do_and_vfs(do_host, dolab, s3_endpoint, s3_bucket):
    host = do_host(1001, "host-a", "--drivers", "vfs", "--s3-endpoint", s3_endpoint)  # Spaces is such an endpoint
    store = f"s3://{s3_bucket}@us-east-1/convoy"
    host.docker_ok("Create", {"Name": "src", "Opts": {"size": "1G", "driver": "digitalocean"}})
    mountpoint = host.docker_ok("Mount", {"Name": "src", "ID": "c1"})["Mountpoint"]
    Path(mountpoint, "data").write_bytes(b"x" * (3 << 20))
    host.docker_ok("Unmount", {"Name": "src", "ID": "c1"})
    snapshot = host.cli("snapshot", "create", "src", check=True).stdout.strip()
    url = host.cli("backup", "create", snapshot, "--dest", store, check=True).stdout.strip()
    assert cli_json(host, "backup", "inspect", url)["source"] == "image"
    for driver in ("digitalocean", "vfs"):
        host.cli("create", f"back-{driver}", "--backup", url, "--driver", driver, check=True)
        restored = host.docker_ok("Mount", {"Name": f"back-{driver}", "ID": "c1"})["Mountpoint"]
        assert Path(restored, "data").read_bytes() == b"x" * (3 << 20)
        host.docker_ok("Unmount", {"Name": f"back-{driver}", "ID": "c1"})
    names = [v["name"] for v in dolab.api("GET", "/v2/volumes")[1]["volumes"]]
    assert not [n for n in names if n.startswith("convoy-read-")], "the volume made to read the snapshot is destroyed"


@pytest.mark.parametrize(
    "url, message",
    [
        ("do://fra1/0b3aef8c-1f2e-11ee-9c1b-0a58ac14b3a1", "is in fra1, this droplet in nyc3"),
        ("do://nyc3/snap-0123", "is not a DigitalOcean backup URL: use do://REGION/SNAPSHOT_ID"),
    ],
)
def test_a_wrong_do_backup_url_is_refused_naming_what_to_do(do_host, url, message):
    host = do_host()
    result = host.cli("create", "never", "--backup", url)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert host.cli("inspect", "never").returncode != 0
