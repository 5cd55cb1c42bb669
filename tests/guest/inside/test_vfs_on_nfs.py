"""VFS volumes on real NFS (issue 11): two daemons posing as two hosts, each with `vfs.path` on its own
mount of one kernel-NFS export. The VFS driver must see NFS as shared storage by itself (no vfs.shared),
so that volumes are listed across hosts, Docker's remove keeps the data, snapshots and backups use
copies (NFS has no reflink), and a host killed mid-backup leaves the other's view intact."""

import os
import time
from pathlib import Path

import pytest

from tests.backup.treecheck import describe
from tests.daemon_harness import cli_json, wait_until


def fill(directory: Path, big: int = 3 << 20) -> Path:
    """Files a user would keep on NFS: nested, random bytes, an old mtime, a symlink, an owner."""
    (directory / "docs" / "nested").mkdir(parents=True, exist_ok=True)
    (directory / "docs" / "hello.txt").write_text("hello from host a\n")
    os.utime(directory / "docs" / "hello.txt", ns=(1577934240_000000000, 1577934240_000000000))
    (directory / "docs" / "nested" / "big.bin").write_bytes(os.urandom(big))
    (directory / "owned").write_text("owned by 1234:5678\n")
    os.chown(directory / "owned", 1234, 5678)
    os.symlink("docs/hello.txt", directory / "link")
    return directory


class Hosts:
    def __init__(self, nfs_mounts, make_daemon):
        self.nfs = nfs_mounts
        # --shared-refresh: read the other host's records often, as the tests cannot wait the default
        self.a = make_daemon("--driver-opts", f"vfs.path={nfs_mounts.first / 'vfs'}", "--shared-refresh", "0.5", name="a")
        self.b = make_daemon("--driver-opts", f"vfs.path={nfs_mounts.second / 'vfs'}", "--shared-refresh", "0.5", name="b")

    def volume_dir(self, host: str, name: str) -> Path:
        return (self.nfs.first if host == "a" else self.nfs.second) / "vfs" / name

    def store(self, host: str) -> str:
        return f"vfs://{(self.nfs.first if host == 'a' else self.nfs.second) / 'store'}"


@pytest.fixture
def hosts(nfs_mounts, make_daemon):
    """Host a and host b (daemons), vfs.path on the first and second NFS mounts of one export."""
    return Hosts(nfs_mounts, make_daemon)


def test_vfs_on_nfs_is_detected_as_shared_storage(hosts):
    for daemon in (hosts.a, hosts.b):
        assert daemon.docker_ok("Capabilities") == {"Capabilities": {"Scope": "global"}}


def test_a_volume_created_on_one_host_is_listed_and_mounted_on_the_other(hosts):
    hosts.a.docker_ok("Create", {"Name": "common", "Opts": {"size": "2G"}})
    at_a = hosts.a.docker_ok("Mount", {"Name": "common", "ID": "ca"})["Mountpoint"]
    Path(at_a, "from-a").write_text("written on host a")

    assert wait_until(lambda: hosts.b.docker_ok("List")["Volumes"], 10), "host b never listed host a's volume"
    assert [v["Name"] for v in hosts.b.docker_ok("List")["Volumes"]] == ["common"]
    assert hosts.b.docker_ok("Get", {"Name": "common"})["Volume"]["Status"]["size"] == "2G"
    at_b = hosts.b.docker_ok("Mount", {"Name": "common", "ID": "cb"})["Mountpoint"]
    assert Path(at_b, "from-a").read_text() == "written on host a"
    Path(at_b, "from-b").write_text("written on host b")
    assert Path(at_a, "from-b").read_text() == "written on host b"


def test_docker_remove_on_one_host_keeps_the_data_for_the_other(hosts):
    hosts.a.docker_ok("Create", {"Name": "kept"})
    fill(hosts.volume_dir("a", "kept"))
    before = describe(hosts.volume_dir("a", "kept"))
    hosts.b.docker_ok("Get", {"Name": "kept"})  # what docker run -v does first on host b
    at_b = hosts.b.docker_ok("Mount", {"Name": "kept", "ID": "cb"})["Mountpoint"]

    hosts.a.docker_ok("Remove", {"Name": "kept"})
    assert hosts.a.docker_ok("List")["Volumes"] == []
    assert describe(at_b) == before, "host b's mounted volume changed when host a removed it from Docker"
    hosts.b.docker_ok("Unmount", {"Name": "kept", "ID": "cb"})
    at_b = hosts.b.docker_ok("Mount", {"Name": "kept", "ID": "cb2"})["Mountpoint"]
    assert describe(at_b) == before
    # and host a can take it back: creating it again adopts the data
    hosts.a.docker_ok("Create", {"Name": "kept"})
    assert describe(hosts.a.docker_ok("Mount", {"Name": "kept", "ID": "ca"})["Mountpoint"]) == before


def test_snapshots_and_backups_on_nfs_are_copies_restorable_on_the_other_host(hosts):
    hosts.a.cli("create", "data", check=True)
    source = fill(hosts.volume_dir("a", "data"))
    snapshot = hosts.a.cli("snapshot", "create", "data", check=True).stdout.strip()
    assert cli_json(hosts.a, "snapshot", "inspect", snapshot)["method"] == "copy"  # no reflink on NFS
    (source / "docs" / "hello.txt").write_text("changed after the snapshot\n")
    expected = describe(source)
    url = hosts.a.cli("backup", "create", snapshot, "--dest", hosts.store("a"), check=True).stdout.strip()
    second = hosts.a.cli("snapshot", "create", "data", check=True).stdout.strip()
    url2 = hosts.a.cli("backup", "create", second, "--dest", hosts.store("a"), check=True).stdout.strip()

    # host b reaches the same store through its own mount
    url_b, url2_b = (u.replace(hosts.store("a"), hosts.store("b")) for u in (url, url2))
    listed = cli_json(hosts.b, "backup", "list", hosts.store("b"), "--volume-name", "data")
    assert sorted(b["url"] for b in listed) == sorted([url_b, url2_b])
    assert "intact" in hosts.b.cli("backup", "verify", url2_b, check=True).stdout
    hosts.b.cli("create", "restored", "--backup", url2_b, check=True)
    assert describe(hosts.volume_dir("b", "restored")) == expected
    hosts.b.cli("create", "older", "--backup", url_b, check=True)
    assert (hosts.volume_dir("b", "older") / "docs" / "hello.txt").read_text() == "hello from host a\n"


def test_a_host_killed_mid_backup_leaves_the_other_hosts_view_intact(hosts):
    hosts.a.cli("create", "big", check=True)
    fill(hosts.volume_dir("a", "big"), big=64 << 20)
    before = describe(hosts.volume_dir("a", "big"))
    first = hosts.a.cli("snapshot", "create", "big", check=True).stdout.strip()
    url = hosts.a.cli("backup", "create", first, "--dest", hosts.store("a"), check=True).stdout.strip()
    (hosts.volume_dir("a", "big") / "docs" / "nested" / "big.bin").write_bytes(os.urandom(64 << 20))
    second = hosts.a.cli("snapshot", "create", "big", check=True).stdout.strip()

    status, job = hosts.a.control("POST", "/backups", {"snapshot": second, "dest": hosts.store("a")})
    assert status == 202, job
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = hosts.a.control("GET", f"/jobs/{job['id']}")[1]
        if job["progress"]["done_bytes"] > 0 or job["state"] != "running":
            break
        time.sleep(0.01)
    assert job["state"] == "running", f"the backup must still be running to be killed half-way: {job}"
    hosts.a.kill9()

    url_b = url.replace(hosts.store("a"), hosts.store("b"))
    listed = cli_json(hosts.b, "backup", "list", hosts.store("b"), "--volume-name", "big")
    assert [b["url"] for b in listed] == [url_b], "a half-written backup is listed on the other host"
    assert "intact" in hosts.b.cli("backup", "verify", url_b, check=True).stdout
    assert [v["Name"] for v in hosts.b.docker_ok("List")["Volumes"]] == ["big"]
    hosts.b.cli("create", "from-first", "--backup", url_b, check=True)
    assert describe(hosts.volume_dir("b", "from-first")) == before
