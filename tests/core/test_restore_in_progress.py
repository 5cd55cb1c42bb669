"""A volume being restored holds partial data: nothing but the restore may use it.

It once could be snapshotted; when the restore then failed, its clean-up could
not delete it (it had a snapshot), so it stayed "being restored" forever and
every start deleted its data but kept the record ("FOREIGN KEY constraint
failed" on every start).
"""

import json
import os
import sqlite3
import time

import pytest

from tests.open_gate import OpenGate

pytestmark = pytest.mark.needs_root


def cli_json(daemon, *args):
    result = daemon.cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class BlockedRestore:
    """A restore held half-way: the open of one block of its backup waits until the test lets it go."""

    def __init__(self, daemon, tmp_path, name="half"):
        self.daemon, self.name = daemon, name
        daemon.cli("create", "source", check=True)
        (daemon.root / "vfs" / "source" / "blob").write_bytes(os.urandom(6 << 20))
        snapshot = daemon.cli("snapshot", "create", "source", check=True).stdout.strip()
        store = tmp_path / "store"
        self.url = daemon.cli("backup", "create", snapshot, "--dest", f"vfs://{store}", check=True).stdout.strip()
        blocks = sorted(p for p in store.rglob("*") if p.is_file() and "blocks" in p.parts)
        assert blocks, "the backup must have blocks"
        self.block = blocks[len(blocks) // 2]
        self.writer = os.open(self.block, os.O_WRONLY)  # opened before the gate, so writing never waits on it
        self.gate = OpenGate(self.block)
        status, self.job = daemon.control("POST", "/restores", {"name": name, "url": self.url})
        assert status == 202, self.job
        self.held = self.gate.held(30)
        assert self.held, ("the restore never opened the held block", self.job_state())

    def job_state(self) -> str:
        return self.daemon.control("GET", f"/jobs/{self.job['id']}")[1]["state"]

    def fail(self) -> None:
        """Damage the held block, then let the restore read it: it fails its checksum and cleans up."""
        os.ftruncate(self.writer, 0)
        os.write(self.writer, b"not the block you are looking for")
        os.close(self.writer)
        self.gate.allow(self.held)
        self.gate.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.job_state() == "running":
            time.sleep(0.02)
        assert self.job_state() == "failed"


def wait_gone(daemon, name):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and daemon.cli("inspect", name).returncode != 3:
        time.sleep(0.05)
    assert daemon.cli("inspect", name).returncode == 3, daemon.cli("inspect", name).stdout


def test_a_volume_being_restored_cannot_be_snapshotted_mounted_or_deleted_and_a_failed_restore_leaves_nothing(
    daemon, tmp_path
):
    restore = BlockedRestore(daemon, tmp_path)
    assert restore.job_state() == "running"

    for args in (["snapshot", "create", "half"], ["delete", "half"], ["mount", "half"]):
        result = daemon.cli(*args)
        assert result.returncode == 4, (args, result.stdout, result.stderr)
        assert "volume half is still being restored from" in result.stderr, result.stderr
        assert "when the restore has finished" in result.stderr
    for method in ("Mount", "Remove"):
        status, data = daemon.docker(method, {"Name": "half", "ID": "c1"})
        assert status != 200 and "still being restored" in data["Err"], data
    assert [s["volume"] for s in cli_json(daemon, "snapshot", "list")] == ["source"]

    restore.fail()
    wait_gone(daemon, "half")
    assert not (daemon.root / "vfs" / "half").exists()
    assert [v["name"] for v in cli_json(daemon, "list")] == ["source"]

    daemon.stop()
    daemon.start()
    daemon.docker_ok("List")
    daemon.cli("create", "half", check=True)  # the name is free again
    assert "FOREIGN KEY" not in daemon.log_text()
    assert "Traceback" not in daemon.log_text()


def test_docker_create_of_a_volume_the_cli_is_restoring_neither_reports_it_ready_nor_cancels_it(daemon, tmp_path):
    """Docker retrying a create joins its own restore; one the CLI started is not Docker's to
    report done (the data is partial) nor to cancel at Docker's deadline."""
    restore = BlockedRestore(daemon, tmp_path)
    started = time.monotonic()
    status, data = daemon.docker("Create", {"Name": "half", "Opts": {"backup": restore.url}})
    assert time.monotonic() - started < 10
    assert status != 200 and "still being restored" in data["Err"] and "convoy inspect half" in data["Err"], data
    assert restore.job_state() == "running"  # the user's restore goes on
    status, data = daemon.docker("Mount", {"Name": "half", "ID": "c1"})
    assert status != 200, data
    restore.fail()
    wait_gone(daemon, "half")
    assert "Traceback" not in daemon.log_text()


def test_start_up_removes_an_interrupted_restore_with_snapshots_without_a_foreign_key_failure(daemon):
    """The state an older version could leave: a volume being restored that has a snapshot."""
    daemon.cli("create", "half", check=True)
    (daemon.root / "vfs" / "half" / "partial").write_text("half restored")
    snapshot = daemon.cli("snapshot", "create", "half", check=True).stdout.strip()
    daemon.stop()
    db = sqlite3.connect(daemon.root / "catalog.db")
    db.execute("UPDATE volumes SET restoring_from=? WHERE name='half'", ("vfs:///nowhere?backup=b1&volume=half",))
    db.commit()
    db.close()

    for _ in range(2):  # and nothing is left for the start after
        daemon.start()
        wait_gone(daemon, "half")
        assert cli_json(daemon, "snapshot", "list") == []
        assert daemon.cli("snapshot", "inspect", snapshot).returncode == 3
        assert not (daemon.root / "vfs" / "half").exists()
        assert not (daemon.root / "vfs" / ".convoy" / "snapshots" / "half" / snapshot).exists()
        daemon.stop()
    log = daemon.log_text()
    assert "FOREIGN KEY" not in log and "could not remove" not in log, log
    daemon.start()
    daemon.cli("create", "half", check=True)


def test_docker_create_from_a_backup_over_an_existing_name_is_refused_before_the_store_is_asked(daemon, tmp_path):
    """The store may be slow or gone: a name that is taken is known without it."""
    daemon.cli("create", "taken", check=True)
    missing = f"vfs://{tmp_path / 'no-such-store'}?backup=b1&volume=v1"
    status, data = daemon.docker("Create", {"Name": "taken", "Opts": {"backup": missing}})
    assert status != 200 and "volume taken already exists" in data["Err"] and "docker volume rm taken" in data["Err"], data
    assert daemon.cli("inspect", "taken").returncode == 0
