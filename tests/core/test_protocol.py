"""The Docker VolumeDriver protocol over the real plugin socket of a running daemon."""

import re
from pathlib import Path

import pytest

from tests.daemon_harness import http_call, mounted_points, wait_until

pytestmark = pytest.mark.needs_root
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def test_activate_and_capabilities(daemon):
    assert http_call(daemon.plugin_socket, "POST", "/Plugin.Activate") == (200, {"Implements": ["VolumeDriver"]})
    assert daemon.docker_ok("Capabilities") == {"Capabilities": {"Scope": "local"}}


def test_volume_life_through_the_protocol(daemon):
    daemon.docker_ok("Create", {"Name": "data1", "Opts": {"size": "1G"}})
    daemon.docker_ok("Create", {"Name": "data1", "Opts": {"size": "1G"}})  # Docker retries: idempotent

    volume = daemon.docker_ok("Get", {"Name": "data1"})["Volume"]
    assert volume["Name"] == "data1"
    assert RFC3339.match(volume["CreatedAt"]), volume["CreatedAt"]
    status = volume["Status"]
    assert status["driver"] == "vfs" and status["size"] == "1G" and status["mount_refs"] == 0
    assert status["backend.path"] == str(daemon.root / "vfs" / "data1")

    listed = daemon.docker_ok("List")["Volumes"]
    assert [v["Name"] for v in listed] == ["data1"]

    mountpoint = daemon.docker_ok("Mount", {"Name": "data1", "ID": "c1"})["Mountpoint"]
    assert mountpoint == str(daemon.mount_root / "data1")
    assert mountpoint in mounted_points()
    assert daemon.docker_ok("Path", {"Name": "data1"})["Mountpoint"] == mountpoint
    Path(mountpoint, "hello.txt").write_text("kept")
    assert (daemon.root / "vfs" / "data1" / "hello.txt").read_text() == "kept"

    daemon.docker_ok("Unmount", {"Name": "data1", "ID": "c1"})
    assert mountpoint not in mounted_points()
    daemon.docker_ok("Remove", {"Name": "data1"})
    assert daemon.docker_ok("List")["Volumes"] == []
    # VFS on a local disk: Docker's remove deletes the data
    assert not (daemon.root / "vfs" / "data1").exists()
    daemon.docker_ok("Remove", {"Name": "data1"})  # a retried remove is harmless


def test_remove_of_a_mounted_volume_fails_and_keeps_it(daemon):
    daemon.docker_ok("Create", {"Name": "busy"})
    daemon.docker_ok("Mount", {"Name": "busy", "ID": "c1"})
    status, data = daemon.docker("Remove", {"Name": "busy"})
    assert status != 200 and "busy is mounted" in data["Err"] and "stop the containers" in data["Err"]
    assert daemon.docker_ok("Get", {"Name": "busy"})["Volume"]["Status"]["mount_refs"] == 1


def test_remove_on_shared_storage_deletes_only_the_reference(make_daemon):
    daemon = make_daemon("--driver-opts", "vfs.shared=true")
    assert daemon.docker_ok("Capabilities") == {"Capabilities": {"Scope": "global"}}
    daemon.docker_ok("Create", {"Name": "nfsvol"})
    (daemon.root / "vfs" / "nfsvol" / "f").write_text("x")
    daemon.docker_ok("Remove", {"Name": "nfsvol"})
    assert daemon.docker_ok("List")["Volumes"] == []
    assert (daemon.root / "vfs" / "nfsvol" / "f").read_text() == "x"
    # creating it again adopts the existing directory and its data
    daemon.docker_ok("Create", {"Name": "nfsvol"})
    mountpoint = daemon.docker_ok("Mount", {"Name": "nfsvol", "ID": "c2"})["Mountpoint"]
    assert Path(mountpoint, "f").read_text() == "x"


def test_ignore_docker_delete_keeps_volume_and_data(make_daemon):
    daemon = make_daemon("--ignore-docker-delete")
    daemon.docker_ok("Create", {"Name": "keepme"})
    daemon.docker_ok("Remove", {"Name": "keepme"})
    assert [v["Name"] for v in daemon.docker_ok("List")["Volumes"]] == ["keepme"]
    assert (daemon.root / "vfs" / "keepme").is_dir()


def test_create_on_docker_mount(make_daemon):
    plain = make_daemon(name="plain")
    status, data = plain.docker("Mount", {"Name": "auto1", "ID": "x"})
    assert status != 200 and "auto1 does not exist" in data["Err"]

    creating = make_daemon("--create-on-docker-mount", name="creating")
    mountpoint = creating.docker_ok("Mount", {"Name": "auto1", "ID": "x"})["Mountpoint"]
    assert mountpoint in mounted_points()
    assert creating.docker_ok("Get", {"Name": "auto1"})["Volume"]["Status"]["mount_refs"] == 1


def test_two_hosts_sharing_a_vfs_path_list_each_others_volumes(make_daemon, tmp_path):
    shared = tmp_path / "nfs"
    host_a = make_daemon("--driver-opts", f"vfs.path={shared}", name="a")
    host_b = make_daemon("--driver-opts", f"vfs.path={shared}", name="b")
    host_a.docker_ok("Create", {"Name": "common", "Opts": {"size": "2G"}})
    (shared / "common" / "from-a").write_text("A")
    # a name host B has not seen yet: its Get reads the shared records once (what docker run -v does)
    volume = host_b.docker_ok("Get", {"Name": "common"})["Volume"]
    assert volume["Status"]["size"] == "2G"
    assert [v["Name"] for v in host_b.docker_ok("List")["Volumes"]] == ["common"]
    mountpoint = host_b.docker_ok("Mount", {"Name": "common", "ID": "b1"})["Mountpoint"]
    assert Path(mountpoint, "from-a").read_text() == "A"


def test_list_shows_another_host_new_volume_within_the_refresh_interval(make_daemon, tmp_path):
    """List answers from what was read last; shared records are read again every --shared-refresh seconds."""
    shared = tmp_path / "nfs"
    host_a = make_daemon("--driver-opts", f"vfs.path={shared}", name="a")
    host_b = make_daemon("--driver-opts", f"vfs.path={shared}", "--shared-refresh", "0.5", name="b")
    assert host_b.docker_ok("List")["Volumes"] == []
    host_a.docker_ok("Create", {"Name": "later"})
    assert wait_until(lambda: host_b.docker_ok("List")["Volumes"], 10), "host B never listed host A's new volume"
    assert [v["Name"] for v in host_b.docker_ok("List")["Volumes"]] == ["later"]


def test_get_and_list_answer_right_after_a_restart(make_daemon):
    daemon = make_daemon()
    for name in ("aa", "bb", "cc"):
        daemon.docker_ok("Create", {"Name": name})
    daemon.stop()
    daemon.start(wait=False)
    daemon.wait_listening()
    assert [v["Name"] for v in daemon.docker_ok("List")["Volumes"]] == ["aa", "bb", "cc"]
    assert daemon.docker_ok("Get", {"Name": "bb"})["Volume"]["Name"] == "bb"
