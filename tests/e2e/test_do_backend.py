"""The digitalocean back-end through the managed plugin (`docker plugin set convoy DRIVER=digitalocean DO_TOKEN=...`),
against the DO API emulator.

The emulator makes its device links under a directory of the host's /dev, which the plugin sees (its /dev is the
host's), and serves the droplet metadata on loopback, which the plugin reaches (host networking).
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from pathlib import Path

import pytest

from tests.dolab.fixture import DROPLET_A, DROPLET_B
from tests.e2e.engine import PLUGIN, TEST_IMAGE, wait_for
from tests.e2e.swarm import volume_follows_its_task

pytestmark = pytest.mark.e2e


def do_settings(lab, droplet_id: int, drivers: str = "digitalocean") -> dict[str, str]:
    """The plugin's settings for a host posing as droplet `droplet_id` of the emulator."""
    return {
        "DRIVER": drivers,
        "DRIVER_OPTS": f"do.api_endpoint={lab.endpoint} do.dev_root={lab.dev_root}",
        "DO_TOKEN": lab.token,
        "DO_METADATA_ENDPOINT": lab.metadata_endpoint(droplet_id),
    }


@pytest.fixture
def do_plugin(engine, make_dolab, s3_endpoint):
    """The plugin switched to DRIVER=digitalocean,vfs posing as DROPLET_A, with S3 backups to the moto endpoint;
    switched back after."""
    lab = make_dolab(dev_root=Path("/dev") / f"convoy-dolab-{uuid.uuid4().hex[:8]}")
    settings = {
        **do_settings(lab, DROPLET_A, drivers="digitalocean,vfs"),
        "S3_ENDPOINT": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "e2e",
        "AWS_SECRET_ACCESS_KEY": "e2e",
        "AWS_REGION": "us-east-1",
    }
    try:
        with engine.plugin_set(settings):
            yield lab
    finally:
        lab.cleanup()
        shutil.rmtree(lab.dev_root, ignore_errors=True)


def run_in(engine, volume_spec, script):
    return engine.docker("run", "--rm", "-v", volume_spec, TEST_IMAGE, "sh", "-c", script).stdout


def do_volume(lab, engine, name: str) -> dict:
    """The DO volume behind Docker volume `name`, as the API shows it."""
    volume_id = engine.convoy_json("inspect", name)["backend"]["volume_id"]
    status, answer = lab.api("GET", f"/v2/volumes/{volume_id}")
    assert status == 200, answer
    return answer["volume"]


def console_volume(lab, name: str, size: int = 1) -> dict:
    """A volume made outside convoy (the control panel, doctl)."""
    status, answer = lab.api("POST", "/v2/volumes", {"name": name, "region": lab.region, "size_gigabytes": size})
    assert status == 201, answer
    return answer["volume"]


def test_do_volumes_through_docker_options_names_adoption_resize_and_a_killed_plugin(engine, vol, do_plugin):
    lab = do_plugin
    name = vol("do")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1536M", "-o", "fs=xfs", "-o", "description=orders db",
                  "-o", "tags=team-a,prod:eu", "-o", "force_detach=true", name)
    shown = do_volume(lab, engine, name)
    assert (shown["size_gigabytes"], shown["description"]) == (2, f"orders db (convoy volume {name})"), shown
    assert {"team-a", "prod:eu", "convoy:volume"} <= set(shown["tags"]), shown["tags"]
    assert engine.convoy_json("inspect", name)["backend"]["force_detach"] == "true"
    run_in(engine, f"{name}:/data", "echo on-do > /data/f")
    assert run_in(engine, f"{name}:/data", "cat /data/f; stat -f -c %T /data") == "on-do\nxfs\n"
    assert do_volume(lab, engine, name)["droplet_ids"] == [], "detached when no container uses it"

    # a Docker name DigitalOcean would reject works under a valid DO name, listed by its Docker name
    odd = f"E2E_Odd.{uuid.uuid4().hex[:4]}"
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1G", odd)
    do_name = do_volume(lab, engine, odd)["name"]
    assert do_name != odd and do_name[0].isalpha() and do_name == do_name.lower(), do_name
    run_in(engine, f"{odd}:/data", "echo odd > /data/f")
    assert run_in(engine, f"{odd}:/data", "cat /data/f") == "odd\n" and odd in engine.volumes()

    # adopt by id and by DO name
    by_id = console_volume(lab, f"console-{uuid.uuid4().hex[:6]}", 2)
    by_name = console_volume(lab, f"pg-{uuid.uuid4().hex[:6]}", 3)
    adopted_id, adopted_name = vol("byid"), vol("byname")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", f"id={by_id['id']}", adopted_id)
    engine.docker("volume", "create", "-d", PLUGIN, "-o", f"do_name={by_name['name']}", adopted_name)
    assert engine.convoy_json("inspect", adopted_id)["size"] == 2 << 30
    assert engine.convoy_json("inspect", adopted_name)["size"] == 3 << 30
    run_in(engine, f"{adopted_name}:/data", "echo adopted > /data/g")
    assert run_in(engine, f"{adopted_name}:/data", "cat /data/g") == "adopted\n"

    # resize while a container uses it; then kill -9 of the plugin under that container
    engine.docker("run", "-d", "--name", "e2e-do-keeper", "-v", f"{name}:/data", TEST_IMAGE, "sleep", "600")
    try:
        engine.convoy("resize", name, "4G")
        assert do_volume(lab, engine, name)["size_gigabytes"] == 4
        blocks = int(engine.docker("exec", "e2e-do-keeper", "df", "-k", "/data").stdout.splitlines()[1].split()[1])
        assert blocks > 3 << 20, "the file system grew under the running container"
        old = engine.plugin_pids()
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        wait_for("Docker to restart the plugin", lambda: [p for p in engine.plugin_pids() if p not in old])
        engine.docker("exec", "e2e-do-keeper", "sh", "-c", "echo after-kill >> /data/f")
        assert engine.docker("exec", "e2e-do-keeper", "cat", "/data/f").stdout == "on-do\nafter-kill\n"
        assert do_volume(lab, engine, name)["droplet_ids"] == [DROPLET_A], "attached once, not twice"
    finally:
        engine.docker("rm", "-f", "e2e-do-keeper", check=False)
    assert do_volume(lab, engine, name)["droplet_ids"] == []


def test_do_snapshots_backups_and_a_holder_elsewhere_through_docker(engine, vol, do_plugin, s3_endpoint):
    import boto3

    lab = do_plugin
    name = vol("dosrc")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1G", name)
    run_in(engine, f"{name}:/data", "dd if=/dev/urandom of=/data/a bs=1M count=4 2>/dev/null")
    digest = run_in(engine, f"{name}:/data", "md5sum /data/a").split()[0]
    snapshot = engine.convoy("snapshot", "create", name).stdout.strip()
    clone = vol("doclone")
    snapshot_id = engine.convoy_json("snapshot", "inspect", snapshot)["details"]["snapshot_id"]
    engine.docker("volume", "create", "-d", PLUGIN, "-o", f"snapshot={snapshot_id}", clone)
    assert run_in(engine, f"{clone}:/data", "md5sum /data/a").split()[0] == digest, "a volume from a DO snapshot"

    url = engine.convoy("backup", "create", snapshot, "--dest", "do://").stdout.strip()
    assert url.startswith(f"do://{lab.region}/"), url
    from_do = vol("fromdo")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", f"backup={url}", from_do)
    assert run_in(engine, f"{from_do}:/data", "md5sum /data/a").split()[0] == digest

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="e2e", aws_secret_access_key="e2e")
    s3.create_bucket(Bucket="convoy-do-e2e")
    image_url = engine.convoy("backup", "create", snapshot, "--dest", "s3://convoy-do-e2e@us-east-1/do").stdout.strip()
    assert engine.convoy_json("backup", "inspect", image_url)["source"] == "image"
    for driver in ("digitalocean", "vfs"):
        restored = vol(f"s3-{driver}")
        engine.docker("volume", "create", "-d", PLUGIN, "-o", f"backup={image_url}", "-o", f"driver={driver}", restored)
        assert run_in(engine, f"{restored}:/data", "md5sum /data/a").split()[0] == digest, driver

    # 429 storms are waited out
    lab.admin.rate_limit_storm(6)
    stormy = vol("storm")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1G", stormy)
    assert run_in(engine, f"{stormy}:/data", "echo through > /data/f; cat /data/f") == "through\n"

    # another droplet holds two volumes: an active one is refused by id; powered off, the volume created with
    # force_detach=true is taken from it and the other is refused with what to do
    forced = vol("doforced")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1G", "-o", "force_detach=true", forced)
    run_in(engine, f"{forced}:/data", "echo kept > /data/f")
    for volume in (name, forced):
        volume_id = do_volume(lab, engine, volume)["id"]
        status, answer = lab.api("POST", f"/v2/volumes/{volume_id}/actions",
                                 {"type": "attach", "droplet_id": DROPLET_B, "region": lab.region})
        assert status == 202, answer
        wait_for("the attach to droplet B", lambda v=volume: do_volume(lab, engine, v)["droplet_ids"] == [DROPLET_B])
    refused = engine.docker("run", "--rm", "-v", f"{name}:/data", TEST_IMAGE, "true", check=False)
    assert refused.returncode != 0 and str(DROPLET_B) in refused.stderr and "active" in refused.stderr, refused.stderr
    lab.admin.power_off(DROPLET_B)
    refused = engine.docker("run", "--rm", "-v", f"{name}:/data", TEST_IMAGE, "true", check=False)
    assert refused.returncode != 0 and "force_detach" in refused.stderr, refused.stderr
    assert run_in(engine, f"{forced}:/data", "cat /data/f") == "kept\n", "force-detached from the powered-off droplet"
    logged = [line for line in engine.logs().splitlines() if f"force-detaching {forced}" in line]
    assert logged and str(DROPLET_B) in logged[-1], "the log names the droplet it was taken from"


def test_do_swarm_service_volume_follows_its_task_to_another_droplet(engine, second_engine, vol, do_plugin):
    """Two engines on this machine pose as two droplets of one region: the service's task moves, its volume follows."""
    lab, other = do_plugin, second_engine
    other.configure_plugin(do_settings(lab, DROPLET_B))
    name = vol("dofollow")
    volume_follows_its_task(engine, other, name, lambda: do_volume(lab, engine, name)["droplet_ids"], DROPLET_A, DROPLET_B)
    assert other.convoy_json("inspect", name)["backend"]["volume_id"] == do_volume(lab, engine, name)["id"]
