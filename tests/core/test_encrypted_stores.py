"""Encrypted stores through a running daemon, as an operator drives them (issue 13).

`convoy store init --encrypt` gets its secret from the CLI's environment (or
a key file); the daemon backs up and restores with its own
(CONVOY_STORE_PASSPHRASE, CONVOY_STORE_KEY_FILE).
"""

import json
import os
import time
from pathlib import Path

import blake3
import pytest

from tests.backup.treecheck import describe
from tests.core.test_backups import fill_volume
from tests.daemon_harness import cli_json

pytestmark = pytest.mark.needs_root

PASSPHRASE = "correct horse battery staple"
MARKER = b"plaintext-marker-that-must-never-reach-the-store"


def encrypted_daemon(make_daemon, *args, name="host", passphrase=PASSPHRASE):
    return make_daemon(*args, name=name, env={"CONVOY_STORE_PASSPHRASE": passphrase} if passphrase else {})


def init_store(daemon, dest, monkeypatch, *extra, passphrase=PASSPHRASE):
    if passphrase:
        monkeypatch.setenv("CONVOY_STORE_PASSPHRASE", passphrase)
    result = daemon.cli("store", "init", dest, "--encrypt", *extra)
    monkeypatch.delenv("CONVOY_STORE_PASSPHRASE", raising=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("made encrypted store"), result.stdout
    return result


def store_objects(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file()}


def block_files(store: Path) -> set[str]:
    """The names of the blocks committed (renamed into place), not the temporaries of a write."""
    return {p.name for p in (store / "convoy-store" / "blocks").rglob("*") if p.is_file() and len(p.name) == 64}


def backup(daemon, volume, dest, *extra):
    snapshot = daemon.cli("snapshot", "create", volume, check=True).stdout.strip()
    return cli_json(daemon, "backup", "create", snapshot, "--dest", dest, *extra)


def volume_with_marker(daemon, name):
    source = fill_volume(daemon, name)
    (source / "secret.txt").write_bytes(MARKER * 100)
    return source


@pytest.mark.parametrize("kind", ["vfs", "s3"])
def test_round_trip_and_nothing_readable_in_the_store(make_daemon, tmp_path, monkeypatch, kind, request):
    if kind == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        dest = f"s3://{bucket}@us-east-1/enc"
        host = encrypted_daemon(make_daemon, "--s3-endpoint", endpoint)
    else:
        dest = f"vfs://{tmp_path / 'store'}"
        host = encrypted_daemon(make_daemon)
    init_store(host, dest, monkeypatch)
    again = host.cli("store", "init", dest)
    assert again.returncode == 4 and "already a backup store" in again.stderr

    source = volume_with_marker(host, "app")
    result = backup(host, "app", dest)
    url = result["url"]
    assert result["block_hash"] == "blake3-keyed"
    assert [b["url"] for b in cli_json(host, "backup", "list", dest)] == [url]
    assert cli_json(host, "backup", "inspect", url)["volume"] == "app"
    assert "intact" in host.cli("backup", "verify", url, check=True).stdout
    host.cli("create", "restored", "--backup", url, check=True)
    assert describe(host.root / "vfs" / "restored") == describe(source)

    if kind == "vfs":  # what an attacker with the store sees: no content, no plain hash of it
        objects = store_objects(tmp_path / "store")
        assert not any(MARKER[:24] in data for data in objects.values())
        assert not any(b'"entries"' in data or b"secret.txt" in data for data in objects.values())
        assert blake3.blake3(MARKER * 100).hexdigest() not in block_files(tmp_path / "store")

    host.cli("backup", "delete", url, check=True)
    assert cli_json(host, "backup", "list", dest) == []


def test_key_file_store_and_dedup_across_backups(make_daemon, tmp_path, monkeypatch, xfs_dir):
    key_file = tmp_path / "store.key"
    key_file.write_bytes(os.urandom(32))
    host = make_daemon("--driver-opts", f"vfs.path={xfs_dir}", env={"CONVOY_STORE_KEY_FILE": str(key_file)})
    dest = f"vfs://{tmp_path / 'store'}"
    init_store(host, dest, monkeypatch, "--key-file", str(key_file), passphrase=None)

    host.cli("create", "db", check=True)
    data = xfs_dir / "db" / "data.bin"
    data.write_bytes(os.urandom(16 << 20))
    first = backup(host, "db", dest)
    blocks_after_first = block_files(tmp_path / "store")
    assert first["stats"]["new_blocks"] == len(blocks_after_first) == 16

    with open(data, "r+b") as f:  # one changed MiB of sixteen
        f.seek(5 << 20)
        f.write(os.urandom(1 << 20))
    second = backup(host, "db", dest)
    assert second["stats"]["new_blocks"] == 1, second["stats"]
    assert len(block_files(tmp_path / "store")) == 17
    host.cli("create", "db-restored", "--backup", second["url"], check=True)
    assert (xfs_dir / "db-restored" / "data.bin").read_bytes() == data.read_bytes()


def test_wrong_or_missing_key_fails_before_anything_is_written(make_daemon, tmp_path, monkeypatch):
    dest = f"vfs://{tmp_path / 'store'}"
    owner = encrypted_daemon(make_daemon, name="owner")
    init_store(owner, dest, monkeypatch)
    volume_with_marker(owner, "vol")
    url = backup(owner, "vol", dest)["url"]
    before = store_objects(tmp_path / "store")

    wrong = encrypted_daemon(make_daemon, name="wrong", passphrase="not the passphrase")
    keyless = encrypted_daemon(make_daemon, name="keyless", passphrase=None)
    for host, says in ((wrong, "does not open the encrypted store"), (keyless, "has no passphrase for it")):
        volume_with_marker(host, "vol")
        snapshot = host.cli("snapshot", "create", "vol", check=True).stdout.strip()
        for args in (
            ("backup", "create", snapshot, "--dest", dest),
            ("backup", "list", dest),
            ("backup", "inspect", url),
            ("backup", "verify", url),
            ("backup", "delete", url),
            ("create", "restored", "--backup", url),
        ):
            result = host.cli(*args)
            assert result.returncode == 6 and says in result.stderr, (args, result.returncode, result.stderr)
        assert host.cli("inspect", "restored").returncode == 3  # no volume was made
        assert store_objects(tmp_path / "store") == before  # nothing written, nothing deleted
    assert cli_json(owner, "backup", "list", dest)[0]["url"] == url


def flip_byte(path: Path, offset: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_block_and_manifest_are_damaged_and_never_restored(make_daemon, tmp_path, monkeypatch):
    store = tmp_path / "store"
    dest = f"vfs://{store}"
    host = encrypted_daemon(make_daemon)
    init_store(host, dest, monkeypatch)
    volume_with_marker(host, "vol")
    url = backup(host, "vol", dest)["url"]

    block = sorted((store / "convoy-store" / "blocks").rglob("*/*/*"))[0]
    flip_byte(block)
    verify = host.cli("backup", "verify", url)
    assert verify.returncode == 7 and "damaged" in verify.stdout and "corrupted" in verify.stdout
    restore = host.cli("create", "restored", "--backup", url)
    assert restore.returncode == 7 and "fails authentication" in restore.stderr, restore.stderr
    assert host.cli("inspect", "restored").returncode == 3
    flip_byte(block)  # back as it was
    host.cli("backup", "verify", url, check=True)

    manifest = next((store / "convoy-store" / "volumes" / "vol" / "backups").iterdir())
    flip_byte(manifest, offset=len(manifest.read_bytes()) // 2)
    inspect = host.cli("backup", "inspect", url)
    assert inspect.returncode == 7 and "fails authentication" in inspect.stderr
    listed = cli_json(host, "backup", "list", dest)
    assert "fails authentication" in listed[0]["error"]
    assert host.cli("create", "restored", "--backup", url).returncode == 7
    assert host.cli("inspect", "restored").returncode == 3


def test_swapped_objects_are_detected(make_daemon, tmp_path, monkeypatch):
    store = tmp_path / "store"
    dest = f"vfs://{store}"
    host = encrypted_daemon(make_daemon)
    init_store(host, dest, monkeypatch)
    source = volume_with_marker(host, "vol")
    first = backup(host, "vol", dest)["url"]
    blocks_of_first = sorted((store / "convoy-store" / "blocks").rglob("*/*/*"))
    (source / "new.txt").write_text("another backup")
    second = backup(host, "vol", dest)["url"]

    # one backup's manifest put in place of the other's: each name now holds the other's sealed bytes
    manifests = sorted((store / "convoy-store" / "volumes" / "vol" / "backups").iterdir())
    a, b = (m.read_bytes() for m in manifests)
    manifests[0].write_bytes(b)
    manifests[1].write_bytes(a)
    for url in (first, second):
        result = host.cli("backup", "inspect", url)
        assert result.returncode == 7 and "moved from another name" in result.stderr, result.stderr
    manifests[0].write_bytes(a)
    manifests[1].write_bytes(b)

    # a block's sealed bytes copied over another block
    blocks_of_first[1].write_bytes(blocks_of_first[0].read_bytes())
    result = host.cli("backup", "verify", first, "--json")
    verify = json.loads(result.stdout)
    assert result.returncode == 7 and verify["ok"] is False, verify
    assert [c["block"] for c in verify["corrupted"]] == [blocks_of_first[1].name]


def test_restart_mid_backup(make_daemon, tmp_path, monkeypatch):
    store = tmp_path / "store"
    dest = f"vfs://{store}"
    host = encrypted_daemon(make_daemon)
    init_store(host, dest, monkeypatch)
    host.cli("create", "big", check=True)
    data = host.root / "vfs" / "big" / "data.bin"
    data.write_bytes(os.urandom(128 << 20))
    snapshot = host.cli("snapshot", "create", "big", check=True).stdout.strip()

    status, job = host.control("POST", "/backups", {"snapshot": snapshot, "dest": dest})
    assert status == 202, job
    blocks_dir = store / "convoy-store" / "blocks"
    deadline = time.monotonic() + 60
    while not (blocks_dir.exists() and len(block_files(store)) >= 2):
        assert time.monotonic() < deadline, "no block was written"
        time.sleep(0.005)
    host.kill9()
    assert not (store / "convoy-store" / "volumes" / "big" / "backups").exists() or not any(
        (store / "convoy-store" / "volumes" / "big" / "backups").iterdir()
    ), "the backup finished before the kill: the test needs more data"
    stored_before = len(block_files(store))

    host.start()
    host.wait_ready()
    result = cli_json(host, "backup", "create", snapshot, "--dest", dest)
    assert result["stats"]["new_blocks"] == 128 - stored_before  # what the killed run stored is reused
    host.cli("backup", "verify", result["url"], check=True)
    host.cli("create", "big-restored", "--backup", result["url"], check=True)
    restored = host.root / "vfs" / "big-restored" / "data.bin"
    assert blake3.blake3(restored.read_bytes()).digest() == blake3.blake3(data.read_bytes()).digest()
    assert json.loads(json.dumps(cli_json(host, "backup", "list", dest)))[0]["url"] == result["url"]


def test_store_init_says_what_it_needs(make_daemon, tmp_path, monkeypatch):
    host = make_daemon()  # no secret of its own
    for var in ("CONVOY_STORE_PASSPHRASE", "CONVOY_STORE_KEY"):
        monkeypatch.delenv(var, raising=False)
    no_secret = host.cli("store", "init", f"vfs://{tmp_path / 'a'}", "--encrypt")  # stdin is no terminal
    assert no_secret.returncode == 2 and "needs a secret" in no_secret.stderr
    assert not (tmp_path / "a" / "convoy-store").exists()
    stray = host.cli("store", "init", f"vfs://{tmp_path / 'a'}", "--key-file", "/nonexistent")
    assert stray.returncode == 2 and "--key-file goes with --encrypt" in stray.stderr

    made = init_store(host, f"vfs://{tmp_path / 'b'}", monkeypatch)
    assert "the daemon has no passphrase for it" in made.stderr  # backups would fail: said now

    plain = host.cli("store", "init", f"vfs://{tmp_path / 'c'}", check=True)
    assert plain.stdout.startswith("made store")
    volume_with_marker(host, "vol")
    url = backup(host, "vol", f"vfs://{tmp_path / 'c'}")["url"]
    assert backup(host, "vol", f"vfs://{tmp_path / 'c'}")["block_hash"] == "blake3"
    assert "intact" in host.cli("backup", "verify", url, check=True).stdout
