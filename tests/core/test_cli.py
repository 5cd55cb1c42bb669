"""The `convoy` CLI as a user runs it against a running daemon."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.daemon_harness import CONVOY, REPO, mounted_points

pytestmark = pytest.mark.needs_root


def test_create_list_inspect_delete(daemon):
    assert daemon.cli("create", "web", "--size", "2G", check=True).stdout.strip() == "web"
    daemon.cli("create", "db", "-o", "size=512M", check=True)

    table = daemon.cli("list", check=True).stdout.splitlines()
    assert table[0].split() == ["NAME", "DRIVER", "SIZE", "REFS", "MOUNTED", "AT", "CREATED"]
    assert [line.split()[:4] for line in table[1:]] == [["db", "vfs", "512M", "0"], ["web", "vfs", "2G", "0"]]

    listed = json.loads(daemon.cli("list", "--json", check=True).stdout)
    assert {v["name"]: v["size"] for v in listed} == {"db": 512 << 20, "web": 2 << 30}

    inspected = json.loads(daemon.cli("inspect", "web", "--json", check=True).stdout)
    assert inspected["driver"] == "vfs" and inspected["backend"]["path"] == str(daemon.root / "vfs" / "web")
    human = daemon.cli("inspect", "web", check=True).stdout
    assert re.search(r"^size_human +2G$", human, re.M) and "path" in human

    # the same volumes through Docker's protocol: one service behind both
    assert [v["Name"] for v in daemon.docker_ok("List")["Volumes"]] == ["db", "web"]

    daemon.cli("delete", "web", "db", check=True)
    assert json.loads(daemon.cli("list", "--json", check=True).stdout) == []
    assert not (daemon.root / "vfs" / "web").exists()


def test_delete_reference_only_keeps_the_data(daemon):
    daemon.cli("create", "keepdata", check=True)
    (daemon.root / "vfs" / "keepdata" / "file").write_text("precious")
    daemon.cli("delete", "-r", "keepdata", check=True)
    assert daemon.cli("inspect", "keepdata").returncode == 3
    assert (daemon.root / "vfs" / "keepdata" / "file").read_text() == "precious"


def test_mount_and_umount_from_the_cli(daemon, tmp_path):
    daemon.cli("create", "tools", check=True)
    mountpoint = daemon.cli("mount", "tools", check=True).stdout.strip()
    assert mountpoint == str(daemon.mount_root / "tools") and mountpoint in mounted_points()
    extra = tmp_path / "extra-place"
    assert daemon.cli("mount", "tools", "--mountpoint", str(extra), check=True).stdout.strip() == str(extra)
    Path(extra, "note").write_text("via extra")
    assert Path(mountpoint, "note").read_text() == "via extra"

    # a container shares it; convoy umount releases only the CLI's references
    daemon.docker_ok("Mount", {"Name": "tools", "ID": "container"})
    daemon.cli("umount", "tools", check=True)
    assert str(extra) not in mounted_points() and mountpoint in mounted_points()
    daemon.docker_ok("Unmount", {"Name": "tools", "ID": "container"})
    assert mountpoint not in mounted_points()

    result = daemon.cli("delete", "tools")
    assert result.returncode == 0, result.stderr


def test_delete_of_a_mounted_volume_is_refused(daemon):
    daemon.cli("create", "held", check=True)
    daemon.cli("mount", "held", check=True)
    result = daemon.cli("delete", "held")
    assert result.returncode == 4 and "held is mounted" in result.stderr
    assert (daemon.root / "vfs" / "held").is_dir()


def test_info_shows_the_settings(daemon):
    info = json.loads(daemon.cli("info", "--json", check=True).stdout)
    assert info["default_driver"] == "vfs"
    assert info["root"] == str(daemon.root) and info["mount_root"] == str(daemon.mount_root)
    assert info["drivers"]["vfs"]["scope"] == "local"
    assert "size" in info["drivers"]["vfs"]["volume_options"]
    assert "default_driver" in daemon.cli("info", check=True).stdout


def test_socket_from_the_environment(daemon):
    daemon.cli("create", "envsock", check=True)
    result = subprocess.run(
        [*CONVOY, "list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"CONVOY_SOCKET": str(daemon.socket), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0 and "envsock" in result.stdout


def test_unreachable_daemon_says_so_and_how_to_start_it(tmp_path):
    result = subprocess.run([*CONVOY, "--socket", str(tmp_path / "none.sock"), "list"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 5
    assert result.stderr.count("\n") == 1
    assert "cannot reach the convoy daemon" in result.stderr and "convoy daemon" in result.stderr
