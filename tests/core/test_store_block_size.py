"""A store's block size: its kind's default, or what `convoy store init --block-size` asks (issue 12).

Blocks are the unit of dedup and of requests: S3 stores default to 4 MiB
(a quarter of the requests of 1 MiB), vfs:// stores to 1 MiB. Checked as an
operator would: the store's config, the blocks it holds, and a restore.
"""

import json
import os
from pathlib import Path

import boto3
import pytest

from app.backup.objectstore.vfs import VfsStore
from app.backup.pipeline import BLOCK_MEMORY, worker_count
from tests.backup.treecheck import describe
from tests.core.test_encrypted_stores import backup

pytestmark = pytest.mark.needs_root

MIB = 1 << 20


def volume_with_file(daemon, name: str, size: int) -> Path:
    daemon.cli("create", name, check=True)
    directory = daemon.root / "vfs" / name
    (directory / "data.bin").write_bytes(os.urandom(size))
    return directory


def block_files(store: Path) -> list[Path]:
    return [p for p in (store / "convoy-store" / "blocks").rglob("*") if p.is_file()]


def test_init_with_a_block_size_backs_up_and_restores_in_blocks_of_that_size(make_daemon, tmp_path):
    host = make_daemon()
    store = tmp_path / "store"
    made = host.cli("store", "init", f"vfs://{store}", "--block-size", "256K", check=True)
    assert made.stdout.strip() == f"made store vfs://{store} (256K blocks)"
    assert json.loads((store / "convoy-store" / "config.json").read_text())["block_size"] == 256 << 10

    source = volume_with_file(host, "app", MIB)
    result = backup(host, "app", f"vfs://{store}")
    assert result["stats"]["new_blocks"] == 4  # 1 MiB of random data in 256 KiB blocks
    stored = block_files(store)
    assert len(stored) == 4 and all(p.stat().st_size < 257 << 10 for p in stored)
    host.cli("create", "restored", "--backup", result["url"], check=True)
    assert describe(host.root / "vfs" / "restored") == describe(source)


def test_a_new_vfs_store_has_1_mib_blocks(make_daemon, tmp_path):
    host = make_daemon()
    volume_with_file(host, "app", 3 * MIB)
    result = backup(host, "app", f"vfs://{tmp_path / 'store'}")
    assert json.loads((tmp_path / "store" / "convoy-store" / "config.json").read_text())["block_size"] == MIB
    assert result["stats"]["new_blocks"] == 3


def test_a_new_s3_store_has_4_mib_blocks(make_daemon, s3_endpoint, s3_bucket):
    host = make_daemon("--s3-endpoint", s3_endpoint)
    source = volume_with_file(host, "app", 9 * MIB)
    result = backup(host, "app", f"s3://{s3_bucket}@us-east-1/backups")
    assert result["stats"]["new_blocks"] == 3  # 4 + 4 + 1 MiB
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    config = json.loads(s3.get_object(Bucket=s3_bucket, Key="backups/convoy-store/config.json")["Body"].read())
    assert config["block_size"] == 4 * MIB
    host.cli("create", "restored", "--backup", result["url"], check=True)
    assert describe(host.root / "vfs" / "restored") == describe(source)


def test_an_encrypted_store_takes_a_block_size_too(make_daemon, tmp_path, monkeypatch):
    host = make_daemon()
    monkeypatch.setenv("CONVOY_STORE_PASSPHRASE", "correct horse battery staple")
    made = host.cli("store", "init", f"vfs://{tmp_path / 'enc'}", "--encrypt", "--block-size", "2M", check=True)
    assert made.stdout.startswith("made encrypted store") and "(2M blocks)" in made.stdout
    assert json.loads((tmp_path / "enc" / "convoy-store" / "config.json").read_text())["block_size"] == 2 * MIB


@pytest.mark.parametrize("size", ["3M", "32M", "32K", "0", "lots"])
def test_a_block_size_convoy_cannot_use_is_refused_and_nothing_is_made(make_daemon, tmp_path, size):
    host = make_daemon()
    store = tmp_path / "store"
    refused = host.cli("store", "init", f"vfs://{store}", "--block-size", size)
    assert refused.returncode == 2, refused.stderr
    assert size in refused.stderr and ("power of two from 64K to 16M" in refused.stderr or "is not a size" in refused.stderr
                                       or "larger than zero" in refused.stderr)
    assert not (store / "convoy-store").exists()


@pytest.mark.parametrize("block_size", [64 << 10, MIB, 4 * MIB, 16 * MIB])
def test_workers_never_hold_more_blocks_than_the_memory_bound(tmp_path, block_size):
    store = VfsStore(tmp_path)
    store.parallelism = 12  # as many requests in flight as S3's
    workers = worker_count(store, block_size, 4)
    assert workers >= 2
    assert workers * 2 * block_size <= BLOCK_MEMORY
    if block_size <= MIB:
        assert workers == 12  # small blocks: the store's parallelism, as before
