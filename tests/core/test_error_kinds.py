"""Damaged and cancelled are error kinds of their own, end to end.

A script tells "the backup is damaged: restore it from a copy" and "you
cancelled it: nothing happened" apart from "in use" by the kind in the
control API's error, the HTTP status and the CLI's exit code; none of them
is a conflict.
"""

from __future__ import annotations

import os
import subprocess
import time
from urllib.parse import urlencode

import pytest

from app.backup import layout
from app.cli.output import EXIT_CODES
from app.errors import Cancelled, ConvoyError, Damaged, NotFound, error_from
from app.http_errors import status_for
from tests.daemon_harness import CONVOY, REPO


def wait_for_job(daemon, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = daemon.control("GET", f"/jobs/{job_id}")[1]
        if job["state"] != "running":
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


@pytest.fixture
def damaged_backup(daemon, tmp_path):
    """(daemon, URL) of a backup whose one block has a byte flipped."""
    daemon.cli("create", "vol1", check=True)
    (daemon.root / "vfs" / "vol1" / "data.bin").write_bytes(os.urandom(300_000))
    snapshot = daemon.cli("snapshot", "create", "vol1", check=True).stdout.strip()
    store = tmp_path / "store"
    url = daemon.cli("backup", "create", snapshot, "--dest", f"vfs://{store}", check=True).stdout.strip()
    [block] = [p for p in (store / layout.BLOCKS).rglob("*") if p.is_file()]
    data = bytearray(block.read_bytes())
    data[-5] ^= 0xFF
    block.write_bytes(bytes(data))
    return daemon, url


@pytest.mark.needs_root
def test_a_damaged_block_is_kind_damaged_for_verify_restore_and_the_cli(damaged_backup):
    daemon, url = damaged_backup

    status, job = daemon.control("POST", "/restores", {"name": "restored", "url": url})
    assert status == 202
    job = wait_for_job(daemon, job["id"])
    assert job["state"] == "failed" and job["error"]["kind"] == "damaged", job
    assert "corrupted" in job["error"]["message"] and "data.bin" in job["error"]["message"]

    restore = daemon.cli("create", "restored", "--backup", url)
    assert restore.returncode == EXIT_CODES["damaged"] == 7, restore.stderr
    assert "corrupted" in restore.stderr
    assert daemon.cli("inspect", "restored").returncode == EXIT_CODES["not_found"]  # nothing was left

    verify = daemon.cli("backup", "verify", url)
    assert verify.returncode == EXIT_CODES["damaged"], verify.stderr
    assert "damaged" in verify.stdout and "data.bin" in verify.stdout


@pytest.mark.needs_root
def test_an_unreadable_manifest_answers_422_kind_damaged(damaged_backup, tmp_path):
    daemon, url = damaged_backup
    [manifest] = (tmp_path / "store" / layout.VOLUMES).rglob("backups/*")
    manifest.write_bytes(b"not a zstd frame")
    status, data = daemon.control("GET", "/backups/inspect?" + urlencode({"url": url}))
    assert (status, data["error"]["kind"]) == (422, "damaged"), data
    inspect = daemon.cli("backup", "inspect", url)
    assert inspect.returncode == EXIT_CODES["damaged"] and "cannot be decompressed" in inspect.stderr


@pytest.mark.needs_root
def test_a_cancelled_backup_is_kind_cancelled_and_the_cli_exits_8(daemon, tmp_path):
    daemon.cli("create", "big", check=True)
    chunk = os.urandom(16 << 20)
    with open(daemon.root / "vfs" / "big" / "blob", "wb") as f:
        for _ in range(16):  # 256 MiB to read and hash: the cancel arrives long before the end
            f.write(chunk)
    snapshot = daemon.cli("snapshot", "create", "big", check=True).stdout.strip()
    cli = subprocess.Popen(
        [*CONVOY, "--socket", str(daemon.socket), "backup", "create", snapshot, "--dest", f"vfs://{tmp_path / 'store'}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not daemon.control("GET", "/jobs")[1]["jobs"]:
        time.sleep(0.005)
    [job] = daemon.control("GET", "/jobs")[1]["jobs"]
    status, _ = daemon.control("POST", f"/jobs/{job['id']}/cancel", {})
    assert status == 202
    _, stderr = cli.communicate(timeout=60)
    assert cli.returncode == EXIT_CODES["cancelled"] == 8, stderr
    assert "cancelled" in stderr and "nothing was committed" in stderr

    job = wait_for_job(daemon, job["id"])
    assert job["state"] == "failed" and job["error"]["kind"] == "cancelled", job
    assert daemon.cli("backup", "list", f"vfs://{tmp_path / 'store'}", "--json", check=True).stdout.strip() == "[]"


def test_error_from_rebuilds_every_declared_kind_however_deep():
    """`error_from` must find a kind declared below a subclass of a subclass, and
    a subclass that only refines a message must not take its parent's kind."""
    from app.backup.blocks import BlockDamaged

    assert type(error_from("damaged", "x")) is Damaged
    assert type(error_from("cancelled", "x")) is Cancelled
    assert type(error_from("not_found", "x")) is NotFound
    assert type(error_from("from a newer daemon", "x")) is ConvoyError
    assert BlockDamaged("x").kind == "damaged" and type(error_from("damaged", "x")) is Damaged

    class Deeper(BlockDamaged):
        kind = "deeper-test-kind"

    try:
        assert type(error_from("deeper-test-kind", "x")) is Deeper
    finally:
        ConvoyError._by_kind.pop("deeper-test-kind")
    with pytest.raises(TypeError, match="declared by both"):
        type("Twin", (ConvoyError,), {"kind": "damaged"})
    assert status_for(Damaged("x")) == 422 and status_for(Cancelled("x")) == 409
