"""Volume records on shared storage are untrusted: a bad one is skipped, never trusted.

Other hosts sharing `vfs.path` write `<vfs.path>/.convoy/volumes/NAME.json`.
`{"name": 5}` once broke `convoy list` and Docker's List and Get, and a
record named `../../../../etc` was handed to Docker with a mount point
outside the mount root.
"""

import json
import os
import re
import time

import pytest

from tests.daemon_harness import wait_until

pytestmark = pytest.mark.needs_root


def record(name, **extra):
    return json.dumps({"name": name, "size": 1 << 30, "created_at": "2026-01-01T00:00:00Z", "driver": "vfs", **extra})


def write(content):
    def plant(records, file_name):
        (records / file_name).write_bytes(content if isinstance(content, bytes) else content.encode())

    return plant


def fifo(records, file_name):
    os.mkfifo(records / file_name)  # reading it would block for ever


def directory(records, file_name):
    (records / file_name).mkdir()


def link_to_valid_record(records, file_name):
    outside = records.parent.parent.parent / "outside-record.json"
    outside.write_text(record(file_name[: -len(".json")]))
    (records / file_name).symlink_to(outside)


# stem of the record file -> how to plant it; a directory named after the stem exists too,
# so a record trusted by mistake would be listed
BAD_RECORDS = {
    "num": write(json.dumps({"name": 5, "size": 1, "created_at": "x"})),
    "list": write("[]"),
    "notjson": write("{not json"),
    "empty": write(""),
    "nulls": write("null"),
    "escape": write(record("../../../../etc")),
    "mismatch": write(record("other-name")),
    "hugesize": write(record("hugesize", size=1 << 63)),
    "negsize": write(record("negsize", size=-1)),
    "zerosize": write(record("zerosize", size=0)),
    "strsize": write(record("strsize", size="10G")),
    "boolsize": write(record("boolsize", size=True)),
    "floatsize": write(record("floatsize", size=1.5)),
    "badtime": write(record("badtime", created_at=5)),
    "notime": write(json.dumps({"name": "notime", "size": 1})),
    "longtime": write(record("longtime", created_at="x" * 10000)),
    "big": write(record("big", padding="x" * (1 << 20))),
    "deep": write("[" * 100000 + "]" * 100000),
    "binary": write(b"\xff\xfe\x00garbage"),
    "fifo": fifo,
    "dir": directory,
    "link": link_to_valid_record,
}


def skip_lines(daemon, file_name):
    return [
        line
        for line in daemon.log_text().splitlines()
        if re.search(rf"skipping volume record \S*/{re.escape(file_name)} written on shared storage: ", line)
    ]


def test_bad_shared_records_are_skipped_once_each_and_never_break_list_or_get(make_daemon):
    daemon = make_daemon("--shared-refresh", "0.3")  # read many times over: still one line per file
    daemon.cli("create", "good", check=True)
    vfs = daemon.root / "vfs"
    records = vfs / ".convoy" / "volumes"
    for stem, plant in BAD_RECORDS.items():
        plant(records, f"{stem}.json")
        (vfs / stem).mkdir()
    (vfs / "other-name").mkdir()
    (records / "valid-elsewhere.json").write_text(record("valid-elsewhere"))  # another host's good volume
    (vfs / "valid-elsewhere").mkdir()
    assert wait_until(lambda: len(daemon.docker_ok("List")["Volumes"]) == 2), "the next read lists the good record"

    for _ in range(3):  # Docker asks often: the log says it once per file
        listed = daemon.docker_ok("List")["Volumes"]
        assert [v["Name"] for v in listed] == ["good", "valid-elsewhere"]
        assert all(v["Mountpoint"].startswith(str(daemon.mount_root) + "/") for v in listed)
        result = daemon.cli("list", "--json")
        assert result.returncode == 0, result.stderr
        assert [v["name"] for v in json.loads(result.stdout)] == ["good", "valid-elsewhere"]
        for stem in [*BAD_RECORDS, "other-name"]:
            status, data = daemon.docker("Get", {"Name": stem})
            assert status != 200 and f"volume {stem} does not exist" in data["Err"], (stem, data)
    assert daemon.docker_ok("Get", {"Name": "valid-elsewhere"})["Volume"]["Status"]["size"] == "1G"
    daemon.docker_ok("Get", {"Name": "good"})

    for stem in BAD_RECORDS:
        assert len(skip_lines(daemon, f"{stem}.json")) == 1, (stem, skip_lines(daemon, f"{stem}.json"))
    assert "Traceback" not in daemon.log_text() and "internal error" not in daemon.log_text()

    # a change to a file is worth one more line; a fixed record is then listed
    (records / "num.json").write_text(json.dumps({"name": 6}))
    assert wait_until(lambda: len(skip_lines(daemon, "num.json")) == 2)
    time.sleep(1)  # more reads of the same file
    assert len(skip_lines(daemon, "num.json")) == 2
    (records / "num.json").write_text(record("num"))
    assert wait_until(lambda: "num" in [v["Name"] for v in daemon.docker_ok("List")["Volumes"]])


def test_a_record_whose_volume_directory_is_a_link_is_not_listed(daemon, tmp_path):
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    vfs = daemon.root / "vfs"
    (vfs / ".convoy" / "volumes" / "linked.json").write_text(record("linked"))
    (vfs / "linked").symlink_to(host_dir)
    time.sleep(0.01)
    assert daemon.docker_ok("List")["Volumes"] == []
    status, data = daemon.docker("Get", {"Name": "linked"})
    assert status != 200 and "does not exist" in data["Err"]


def test_a_volume_another_host_just_recorded_is_found_by_its_name_before_the_next_read(make_daemon):
    daemon = make_daemon("--shared-refresh", "3600")  # no background read during the test
    daemon.wait_ready()
    vfs = daemon.root / "vfs"
    (vfs / ".convoy" / "volumes" / "elsewhere.json").write_text(record("elsewhere"))
    (vfs / "elsewhere").mkdir()
    assert daemon.docker_ok("Get", {"Name": "elsewhere"})["Volume"]["Status"]["size"] == "1G"
    daemon.docker_ok("Create", {"Name": "elsewhere"})  # Swarm creates it on every node: the same volume
    assert [v["Name"] for v in daemon.docker_ok("List")["Volumes"]] == ["elsewhere"]
