"""Jobs survive a restart of the daemon, and a backup cut short by kill -9 resumes where it stopped."""

import hashlib
import os
import time

import blake3
import pytest

from app.backup import layout
from app.backup.manifest import load_config
from app.backup.objectstore import open_store
from tests.daemon_harness import cli_json, wait_until

pytestmark = pytest.mark.needs_root




def volume_with_random_file(daemon, name: str, size: int) -> bytes:
    """A VFS volume holding one file of random data; returns the data."""
    daemon.cli("create", name, check=True)
    data = os.urandom(size)
    (daemon.root / "vfs" / name / "data.bin").write_bytes(data)
    return data


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_jobs_are_shown_after_a_restart(daemon, tmp_path):
    volume_with_random_file(daemon, "kept", 1 << 20)
    snapshot = daemon.cli("snapshot", "create", "kept", check=True).stdout.strip()
    url = daemon.cli("backup", "create", snapshot, "--dest", f"vfs://{tmp_path / 'store'}", check=True).stdout.strip()
    [job] = cli_json(daemon, "job", "list")

    daemon.stop()
    daemon.start()
    assert cli_json(daemon, "job", "list") == [job]
    shown = cli_json(daemon, "job", "inspect", job["id"])
    assert shown["state"] == "done" and shown["result"]["url"] == url and shown["finished"] >= shown["started"]
    assert job["id"] in daemon.cli("job", "list", check=True).stdout


def settled_blocks(dest: str, endpoint: str | None) -> set[str | None]:
    """The digests of the blocks in the store, once the listing stops changing: an S3 server may still
    complete a PUT the killed daemon had sent whole."""
    with open_store(dest, s3_endpoint=endpoint, create=False) as store:
        listed = None
        while True:
            now = {layout.digest_of_block_key(key) for key in store.list(layout.BLOCKS)}
            if now == listed:
                return now
            listed = now
            time.sleep(0.5)


def store_block_size(dest: str, endpoint: str | None) -> int:
    with open_store(dest, s3_endpoint=endpoint, create=False) as store:
        config = load_config(store)
    assert config is not None, "the backup wrote no store config"
    return config.block_size


STORES = {"vfs": 512 << 20, "s3": 128 << 20}  # bytes to back up: enough that the job is still running when killed


@pytest.mark.parametrize("kind", sorted(STORES))
def test_a_backup_killed_mid_way_is_interrupted_and_the_next_one_reuses_what_it_stored(make_daemon, tmp_path, request, kind):
    if kind == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        dest, extra = f"s3://{request.getfixturevalue('s3_bucket')}@us-east-1/resume", ("--s3-endpoint", endpoint)
    else:
        endpoint, dest, extra = None, f"vfs://{tmp_path / 'store'}", ()
    daemon = make_daemon(*extra)
    data = volume_with_random_file(daemon, "big", STORES[kind])
    snapshot = daemon.cli("snapshot", "create", "big", check=True).stdout.strip()

    status, job = daemon.control("POST", "/backups", {"snapshot": snapshot, "dest": dest})
    assert status == 202, job

    def some_blocks_stored() -> bool:
        progress = daemon.control("GET", f"/jobs/{job['id']}")[1]["progress"]
        assert progress["done_bytes"] < progress["total_bytes"] or not progress["total_bytes"], "finished before the kill"
        return progress["done_bytes"] >= 8 << 20  # a few blocks of any size convoy makes

    assert wait_until(some_blocks_stored, 60)
    daemon.kill9()
    stored_first = settled_blocks(dest, endpoint)
    size = store_block_size(dest, endpoint)  # 1 MiB on vfs://, 4 MiB on S3
    blocks = [data[i : i + size] for i in range(0, len(data), size)]
    left = sum(len(b) for b in blocks if blake3.blake3(b).hexdigest() not in stored_first)
    assert 0 < left < len(data), "the kill came before any block was stored, or after all were"

    daemon.start()
    interrupted = cli_json(daemon, "job", "inspect", job["id"])
    assert interrupted["state"] == "interrupted" and interrupted["finished"] >= interrupted["started"]
    assert "run the command again" in interrupted["error"]["message"]
    [row] = [line for line in daemon.cli("job", "list", check=True).stdout.splitlines() if line.startswith(job["id"])]
    assert "interrupted" in row and time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(interrupted["finished"])) in row
    assert cli_json(daemon, "backup", "list", dest) == []  # nothing half-committed

    backup = cli_json(daemon, "backup", "create", snapshot, "--dest", dest)
    assert cli_json(daemon, "backup", "inspect", backup["url"])["stats"]["new_bytes"] == left
    daemon.cli("create", "restored", "--backup", backup["url"], check=True)
    assert sha256(daemon.root / "vfs" / "restored" / "data.bin") == hashlib.sha256(data).hexdigest()
