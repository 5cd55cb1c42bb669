"""The digitalocean back-end against the DO API emulator: the same driver code as on DigitalOcean, only the endpoint differs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.daemon_harness import cli_json, mounted_points
from tests.digitalocean.conftest import DROPLET_A, DROPLET_B, volume_of

pytestmark = pytest.mark.needs_root


def make_volume(dolab, name: str, size: int = 1, tags: list[str] | None = None) -> dict:
    """A DO volume made outside convoy (the control panel, doctl)."""
    status, answer = dolab.api(
        "POST", "/v2/volumes", {"name": name, "region": dolab.region, "size_gigabytes": size, "tags": tags or []}
    )
    assert status == 201, answer
    return answer["volume"]


def test_create_with_options_write_and_read_back_in_a_new_mount(do_host, dolab):
    host = do_host()
    opts = {"size": "1536M", "fs": "xfs", "description": "orders db", "tags": "team-a,prod:eu", "force_detach": "true"}
    host.docker_ok("Create", {"Name": "db", "Opts": opts})
    volume = volume_of(dolab, host, "db")
    assert (volume["name"], volume["size_gigabytes"], volume["region"]["slug"]) == ("db", 2, "nyc3"), "GiB, rounded up"
    assert volume["description"] == "orders db (convoy volume db)"
    assert {"convoy:volume", "convoy:name:db", f"convoy:host:{DROPLET_A}", "team-a", "prod:eu"} <= set(volume["tags"])
    inspected = cli_json(host, "inspect", "db")
    assert inspected["size"] == 2 << 30 and inspected["backend"]["force_detach"] == "true"

    mountpoint = host.docker_ok("Mount", {"Name": "db", "ID": "c1"})["Mountpoint"]
    assert volume_of(dolab, host, "db")["droplet_ids"] == [DROPLET_A]
    assert dolab.link_for("db").exists()
    Path(mountpoint, "row").write_text("persisted on DigitalOcean")
    host.docker_ok("Unmount", {"Name": "db", "ID": "c1"})
    assert volume_of(dolab, host, "db")["droplet_ids"] == [], "detached when no container uses it"
    mountpoint = host.docker_ok("Mount", {"Name": "db", "ID": "c2"})["Mountpoint"]
    assert Path(mountpoint, "row").read_text() == "persisted on DigitalOcean"
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    assert [fields[2] for fields in mounts if fields[1] == mountpoint] == ["xfs"]
    host.docker_ok("Unmount", {"Name": "db", "ID": "c2"})


def test_wrong_options_are_refused_before_any_api_call(do_host, dolab):
    host = do_host()
    host.wait_ready()
    before = [c for c in dolab.admin.calls() if c.startswith("POST")]
    for opts, message in (
        ({"size": "20000G"}, "larger than a DigitalOcean volume can be"),
        ({"id": "vol-1"}, "is not a DigitalOcean volume id"),
        ({"tags": "has space"}, "is not a DigitalOcean tag"),
        ({"fs": "btrfs"}, "btrfs"),
        ({"iops": "3000"}, "unknown option iops"),
    ):
        status, data = host.docker("Create", {"Name": "bad", "Opts": opts})
        assert status != 200 and message in data["Err"], data
    assert [c for c in dolab.admin.calls() if c.startswith("POST")] == before


def test_docker_names_digitalocean_rejects_map_to_valid_names_seen_alike_by_another_droplet(do_host, dolab):
    host_a = do_host()
    host_b = do_host(DROPLET_B, "host-b", "--shared-refresh", "0.5")
    for name in ("My_App.data", "my-app-data", "9lives"):
        host_a.docker_ok("Create", {"Name": name, "Opts": {"size": "1G"}})
    names = {v["name"] for v in dolab.api("GET", "/v2/volumes")[1]["volumes"]}
    assert "my-app-data" in names and len(names) == 3, names
    assert all(n[0].isalpha() and n == n.lower() and len(n) <= 64 for n in names)
    mountpoint = host_a.docker_ok("Mount", {"Name": "My_App.data", "ID": "a1"})["Mountpoint"]
    Path(mountpoint, "f").write_text("A")
    host_a.docker_ok("Unmount", {"Name": "My_App.data", "ID": "a1"})
    listed = {v["Name"] for v in host_b.docker_ok("List")["Volumes"]}
    assert {"My_App.data", "my-app-data", "9lives"} <= listed, listed
    mountpoint = host_b.docker_ok("Mount", {"Name": "My_App.data", "ID": "b1"})["Mountpoint"]
    assert Path(mountpoint, "f").read_text() == "A", "the same Docker name is the same DO volume on every droplet"
    host_b.docker_ok("Unmount", {"Name": "My_App.data", "ID": "b1"})


def test_adopt_by_id_and_by_name_and_refuse_another_convoy_volume(do_host, dolab):
    host = do_host()
    by_id = make_volume(dolab, "console-made", size=2)
    make_volume(dolab, "pgdata-prod", size=3)
    host.docker_ok("Create", {"Name": "old", "Opts": {"id": by_id["id"]}})
    host.docker_ok("Create", {"Name": "pg", "Opts": {"do_name": "pgdata-prod"}})
    assert cli_json(host, "inspect", "old")["size"] == 2 << 30
    assert cli_json(host, "inspect", "pg")["size"] == 3 << 30
    assert "convoy:name:old" in volume_of(dolab, host, "old")["tags"], "another droplet finds it under its Docker name"
    status, data = host.docker("Create", {"Name": "again", "Opts": {"id": by_id["id"]}})
    assert status != 200 and "is convoy volume old" in data["Err"], data
    status, data = host.docker("Create", {"Name": "nothing", "Opts": {"do_name": "no-such-volume"}})
    assert status != 200 and "no DigitalOcean volume named no-such-volume in nyc3" in data["Err"], data
    mountpoint = host.docker_ok("Mount", {"Name": "old", "ID": "c1"})["Mountpoint"]
    Path(mountpoint, "f").write_text("in the adopted volume")
    host.docker_ok("Unmount", {"Name": "old", "ID": "c1"})


def test_a_volume_of_another_region_is_refused_before_any_attach(do_host, dolab):
    host = do_host()
    status, answer = dolab.api("POST", "/v2/volumes", {"name": "far", "region": "fra1", "size_gigabytes": 1})
    assert status == 201, answer
    status, data = host.docker("Create", {"Name": "far", "Opts": {"id": answer["volume"]["id"]}})
    assert status != 200 and "is in fra1, this droplet in nyc3" in data["Err"], data


def test_resize_while_mounted_grows_the_volume_and_its_file_system(do_host, dolab):
    host = do_host()
    host.docker_ok("Create", {"Name": "grow", "Opts": {"size": "1G", "fs": "xfs"}})
    mountpoint = host.docker_ok("Mount", {"Name": "grow", "ID": "c1"})["Mountpoint"]
    Path(mountpoint, "f").write_text("kept")
    resized = cli_json(host, "resize", "grow", "3G")
    assert resized["size"] == 3 << 30 and not resized.get("warning"), resized
    assert volume_of(dolab, host, "grow")["size_gigabytes"] == 3
    stat = os.statvfs(mountpoint)
    assert stat.f_blocks * stat.f_frsize > 2 << 30, "the file system grew online"
    assert Path(mountpoint, "f").read_text() == "kept"
    host.docker_ok("Unmount", {"Name": "grow", "ID": "c1"})


def test_a_running_droplet_keeps_its_volume_and_a_powered_off_one_lets_go_only_with_force_detach(do_host, dolab):
    host_a = do_host()
    host_a.docker_ok("Create", {"Name": "stuck", "Opts": {"size": "1G"}})
    mountpoint = host_a.docker_ok("Mount", {"Name": "stuck", "ID": "a1"})["Mountpoint"]
    Path(mountpoint, "f").write_text("before the power-off")
    host_b = do_host(DROPLET_B, "host-b")
    status, data = host_b.docker("Mount", {"Name": "stuck", "ID": "b1"})
    assert status != 200 and str(DROPLET_A) in data["Err"] and "active" in data["Err"], data

    host_a.kill9()  # the droplet dies with the volume attached and mounted
    subprocess_umount(mountpoint)
    dolab.admin.power_off(DROPLET_A)
    status, data = host_b.docker("Mount", {"Name": "stuck", "ID": "b1"})
    assert status != 200 and str(DROPLET_A) in data["Err"] and "force_detach" in data["Err"], data
    host_b.stop()
    host_b = do_host(DROPLET_B, "host-b2", "--driver-opts", "do.force_detach=true")
    mountpoint = host_b.docker_ok("Mount", {"Name": "stuck", "ID": "b1"})["Mountpoint"]
    assert Path(mountpoint, "f").read_text() == "before the power-off"
    assert volume_of(dolab, host_b, "stuck")["droplet_ids"] == [DROPLET_B]
    assert "force-detaching stuck" in host_b.log_text() and str(DROPLET_A) in host_b.log_text()
    host_b.docker_ok("Unmount", {"Name": "stuck", "ID": "b1"})


def subprocess_umount(mountpoint: str) -> None:
    """What the powered-off droplet's kernel lost: its mount of the volume (both "droplets" share this kernel)."""
    subprocess.run(["umount", "-l", mountpoint], check=False)


def test_kill_9_with_a_volume_attached_and_mounted_recovers_it_once(do_host, dolab):
    host = do_host()
    host.docker_ok("Create", {"Name": "held", "Opts": {"size": "1G"}})
    mountpoint = host.docker_ok("Mount", {"Name": "held", "ID": "c1"})["Mountpoint"]
    for _ in range(3):
        host.kill9()
        host.start()
        host.wait_ready()
        assert volume_of(dolab, host, "held")["droplet_ids"] == [DROPLET_A]
        assert mountpoint in mounted_points()
    host.docker_ok("Unmount", {"Name": "held", "ID": "c1"})
    assert volume_of(dolab, host, "held")["droplet_ids"] == []


def test_convoy_delete_destroys_and_docker_remove_keeps_and_snapshots_go_only_when_asked(do_host, dolab):
    host = do_host()
    for name in ("kept", "gone"):
        host.docker_ok("Create", {"Name": name, "Opts": {"size": "1G"}})
    kept, gone = volume_of(dolab, host, "kept")["id"], volume_of(dolab, host, "gone")["id"]
    host.docker_ok("Remove", {"Name": "kept"})
    assert dolab.api("GET", f"/v2/volumes/{kept}")[0] == 200, "Docker's remove keeps data that lives outside the host"
    host.cli("snapshot", "create", "gone", check=True)
    refused = host.cli("delete", "gone")
    assert refused.returncode != 0 and "--snapshots" in refused.stderr, refused.stderr
    host.cli("delete", "--snapshots", "gone", check=True)
    assert dolab.api("GET", f"/v2/volumes/{gone}")[0] == 404
    assert cli_json(host, "snapshot", "list") == []


def test_a_volume_destroyed_outside_convoy_is_named_on_mount_and_forgotten_by_delete(do_host, dolab):
    host = do_host()
    host.docker_ok("Create", {"Name": "lost", "Opts": {"size": "1G"}})
    volume_id = volume_of(dolab, host, "lost")["id"]
    assert dolab.api("DELETE", f"/v2/volumes/{volume_id}")[0] == 204
    status, data = host.docker("Mount", {"Name": "lost", "ID": "c1"})
    assert status != 200 and "does not exist any more" in data["Err"] and "convoy delete lost" in data["Err"], data
    host.cli("delete", "lost", check=True)
    assert host.cli("inspect", "lost").returncode != 0
