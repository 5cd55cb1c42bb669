"""Every bad input gets a clear error that says what was wrong and what to do, and loses nothing."""

import pytest

from tests.daemon_harness import http_call

pytestmark = pytest.mark.needs_root

# (endpoint, body, words the Err must contain)
DOCKER_CASES = [
    ("Create", {"Name": "../etc"}, ["volume name '../etc' is not valid", "[a-zA-Z0-9_.-]"]),
    ("Create", {"Name": "a/b"}, ["is not valid"]),
    ("Create", {"Name": "x"}, ["is not valid", "2 to"]),
    ("Create", {"Name": "-lead"}, ["is not valid", "starting with a letter or digit"]),
    ("Create", {"Name": ""}, ["a volume name is required"]),
    ("Create", {}, ["a volume name is required"]),
    ("Create", {"Name": "v" * 201}, ["is not valid"]),
    ("Create", {"Name": "ok1", "Opts": {"size": "ten gigs"}}, ["size 'ten gigs' is not a size", "10G"]),
    ("Create", {"Name": "ok1", "Opts": {"size": "0"}}, ["must be larger than zero"]),
    ("Create", {"Name": "ok1", "Opts": {"bogus": "1"}}, ["unknown option bogus", "valid options are", "size"]),
    ("Create", {"Name": "ok1", "Opts": {"driver": "nosuch"}}, ["driver 'nosuch' is not enabled", "vfs"]),
    ("Get", {"Name": "missing"}, ["volume missing does not exist", "docker volume create -d convoy missing"]),
    ("Path", {"Name": "missing"}, ["does not exist"]),
    ("Mount", {"Name": "missing", "ID": "x"}, ["does not exist"]),
    ("Mount", {"Name": "../../x", "ID": "x"}, ["is not valid"]),
]


@pytest.mark.parametrize("endpoint, body, words", DOCKER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(DOCKER_CASES)])
def test_docker_protocol_errors(daemon, endpoint, body, words):
    status, data = daemon.docker(endpoint, body)
    assert status != 200
    for word in words:
        assert word in data["Err"], data["Err"]
    assert daemon.docker_ok("List")["Volumes"] == [], "a refused request creates nothing"


def test_a_body_that_is_not_json_is_an_error_not_a_crash(daemon):
    status, data = http_call(daemon.plugin_socket, "POST", "/VolumeDriver.Create", raw=b"{not json")
    assert status == 500 and "Invalid JSON" in data["Err"]
    daemon.docker_ok("List")


def test_nothing_escapes_the_volume_directory(daemon, tmp_path):
    for name in ("..", ".", "../../tmp", "a/../../b"):
        status, _ = daemon.docker("Create", {"Name": name})
        assert status != 200
    assert sorted(p.name for p in (daemon.root / "vfs").iterdir()) == [".convoy"]


# convoy CLI: (args, exit code, words on stderr)
CLI_CASES = [
    (["create", "bad/name"], 2, ["is not valid"]),
    (["create", "okname", "--size", "huge"], 2, ["is not a size"]),
    (["create", "okname", "-o", "nokeyvalue"], 2, ["is not KEY=VALUE"]),
    (["create", "okname", "-o", "colour=red"], 2, ["unknown option colour"]),
    (["inspect", "ghost"], 3, ["volume ghost does not exist"]),
    (["delete", "ghost"], 3, ["volume ghost does not exist"]),
    (["mount", "ghost"], 3, ["does not exist"]),
    (["umount", "ghost"], 3, ["does not exist"]),
]


@pytest.mark.parametrize("args, code, words", CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_cli_errors(daemon, args, code, words):
    result = daemon.cli(*args)
    assert result.returncode == code, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, "one line on stderr"
    for word in words:
        assert word in result.stderr
    assert daemon.docker_ok("List")["Volumes"] == []


def test_cli_umount_of_a_volume_it_did_not_mount(daemon):
    daemon.cli("create", "notmine", check=True)
    daemon.docker_ok("Mount", {"Name": "notmine", "ID": "container"})
    result = daemon.cli("umount", "notmine")
    assert result.returncode == 4 and "was not mounted with `convoy mount`" in result.stderr
    assert daemon.docker_ok("Get", {"Name": "notmine"})["Volume"]["Status"]["mount_refs"] == 1


def test_unknown_daemon_driver_option_stops_the_start(make_daemon):
    daemon = make_daemon("--driver-opts", "vfs.colour=blue", start=False)
    daemon.start(wait=False)
    assert daemon.process.wait(30) != 0
    assert "unknown vfs driver option(s) vfs.colour" in daemon.log_text()


def test_unknown_daemon_driver_stops_the_start(make_daemon):
    daemon = make_daemon("--drivers", "floppy", start=False)
    daemon.start(wait=False)
    assert daemon.process.wait(30) != 0
    assert "unknown driver 'floppy': available are devicemapper, digitalocean, ebs, image, vfs" in daemon.log_text()
