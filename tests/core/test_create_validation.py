"""A create is validated before anything exists, and undone if a later step fails.

A size SQLite could not store (2^63 bytes and more) once created the
directory and the shared record and then failed the catalog insert: the name
was listed but could be neither inspected, deleted nor created again.
"""

import json
import sqlite3

import pytest

from app.errors import ConvoyError
from tests.daemon_harness import in_process_service

pytestmark = pytest.mark.needs_root


def names_everywhere(daemon) -> dict:
    """What each view of the host shows: Docker's List, `convoy list`, the disk."""
    vfs = daemon.root / "vfs"
    return {
        "docker": [v["Name"] for v in daemon.docker_ok("List")["Volumes"]],
        "cli": [v["name"] for v in json.loads(daemon.cli("list", "--json", check=True).stdout)],
        "dirs": sorted(p.name for p in vfs.iterdir() if not p.name.startswith(".")) if vfs.exists() else [],
        "records": sorted(p.name for p in (vfs / ".convoy" / "volumes").glob("*.json")),
    }


NOTHING = {"docker": [], "cli": [], "dirs": [], "records": []}

# (Opts, words the error must contain)
BAD_OPTS = [
    ({"size": "8192P"}, ["size '8192P' is too large", "less than 8192P"]),
    ({"size": "9223372036854775808"}, ["too large"]),
    ({"size": "99999999999999999999999P"}, ["too large"]),
    ({"size": "0"}, ["larger than zero"]),
    ({"size": "-1G"}, ["is not a size"]),
    ({"size": "1e9"}, ["is not a size"]),
    ({"size": "1" * 5000}, ["Opts.size", "at most 4096 characters"]),
    ({"size": 5}, ["Opts.size", "valid string"]),
    ({"size": None}, ["Opts.size", "valid string"]),
    ({"size": ["1G"]}, ["Opts.size", "valid string"]),
    ({"driver": 7}, ["Opts.driver", "valid string"]),
    ({"colour": "blue"}, ["unknown option colour"]),
]


@pytest.mark.parametrize("opts, words", BAD_OPTS, ids=[f"{i}-{next(iter(o))}" for i, (o, _) in enumerate(BAD_OPTS)])
def test_docker_create_with_bad_options_creates_nothing_and_the_name_stays_usable(daemon, opts, words):
    status, data = daemon.docker("Create", {"Name": "vol1", "Opts": opts})
    assert status != 200
    for word in words:
        assert word in data["Err"], data["Err"]
    assert "internal error" not in data["Err"]
    assert names_everywhere(daemon) == NOTHING

    daemon.docker_ok("Create", {"Name": "vol1", "Opts": {"size": "1G"}})
    assert daemon.docker_ok("Get", {"Name": "vol1"})["Volume"]["Status"]["size"] == "1G"
    daemon.docker_ok("Remove", {"Name": "vol1"})
    assert names_everywhere(daemon) == NOTHING
    assert "Traceback" not in daemon.log_text()


def test_cli_create_with_a_size_too_large_is_refused_and_the_name_stays_usable(daemon):
    result = daemon.cli("create", "vol1", "--size", "8192P")
    assert result.returncode == 2, result.stderr
    assert "too large" in result.stderr and "internal error" not in result.stderr
    assert names_everywhere(daemon) == NOTHING
    daemon.cli("create", "vol1", "--size", "8191P", check=True)  # the largest whole-P size fits
    assert json.loads(daemon.cli("inspect", "vol1", "--json", check=True).stdout)["size_human"] == "8191P"
    daemon.cli("delete", "vol1", check=True)
    assert names_everywhere(daemon) == NOTHING


def test_a_create_whose_shared_record_cannot_be_written_leaves_no_directory(daemon):
    records = daemon.root / "vfs" / ".convoy" / "volumes"
    records.rmdir()
    records.write_text("not a directory")  # the record write fails after the directory was made
    status, data = daemon.docker("Create", {"Name": "vol1"})
    assert status != 200 and "volumes is a symbolic link or not a directory" in data["Err"], data
    assert not (daemon.root / "vfs" / "vol1").exists()
    assert daemon.docker_ok("List")["Volumes"] == []


def test_a_failed_catalog_insert_undoes_the_driver_work(tmp_path, monkeypatch):
    service, driver, catalog, _settings = in_process_service(tmp_path)

    def fail(record):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(catalog, "put", fail)
    with pytest.raises(sqlite3.OperationalError):
        service.create("vol1")
    assert not (driver.path / "vol1").exists()
    assert not (driver.records_dir / "vol1.json").exists()
    assert driver.shared_volumes() == []
    monkeypatch.undo()
    assert service.create("vol1")["name"] == "vol1"
    with pytest.raises(ConvoyError, match="already exists"):
        service.create("vol1", exist_ok=False)


@pytest.mark.parametrize("size", [1 << 63, 0, -1, 1.5, "1G", True])
def test_a_restore_with_an_out_of_range_size_from_its_backup_creates_nothing(tmp_path, size):
    """A restore takes the size from the backup's manifest when the user gives none: checked too."""
    service, driver, catalog, _settings = in_process_service(tmp_path)
    with pytest.raises(ConvoyError, match="is out of range"):
        service.create_for_restore("vol1", "vfs", size, {}, "vfs:///store?backup=b&volume=v")
    assert not (driver.path / "vol1").exists() and catalog.all() == []
