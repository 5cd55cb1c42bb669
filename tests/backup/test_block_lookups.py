"""Which new blocks a backup asks the store about before putting them (app/backup/lookups.py).

On S3 every question is a HEAD: a first backup of new data stops asking
about most blocks after a run of misses, yet data the store holds is still
found and not uploaded again, and every backup restores what it backed up.
On a local disk every new block is asked about. Counted on the real store
classes, against the tests' moto server.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from app.backup import SnapshotSource, create_backup, init_store, layout, restore_backup
from app.backup.lookups import MISS_RUN, PROBE_EVERY
from app.backup.objectstore.s3 import S3Store
from app.backup.objectstore.vfs import VfsStore

BLOCK = 64 << 10
# blocks the other workers decide on while a probe's HEAD is out: each may take another one or two
IN_FLIGHT = 2 * S3Store.parallelism


@pytest.fixture
def block_requests(monkeypatch) -> Counter[str]:
    """How many block look-ups ("exists") and block puts ("put") the stores were sent."""
    counts: Counter[str] = Counter()
    for cls in (S3Store, VfsStore):
        for method in ("exists", "put"):
            original = getattr(cls, method)

            def counted(self, key, *args, _original=original, _method=method, **kwargs):
                if key.startswith(layout.BLOCKS):
                    counts[_method] += 1
                return _original(self, key, *args, **kwargs)

            monkeypatch.setattr(cls, method, counted)
    return counts


def _volume(path: Path, *pieces: bytes) -> Path:
    path.mkdir()
    (path / "data").write_bytes(b"".join(pieces))
    return path


def _restores_to(url: str, endpoint: str | None, source: Path, target: Path) -> bool:
    restore_backup(url, str(target), s3_endpoint=endpoint)
    return (target / "data").read_bytes() == (source / "data").read_bytes()


def test_a_first_backup_to_s3_asks_about_few_of_its_new_blocks(s3_endpoint, s3_bucket, tmp_path, block_requests):
    dest = f"s3://{s3_bucket}@us-east-1/backups"
    init_store(dest, secret=None, s3_endpoint=s3_endpoint, block_size=BLOCK)
    blocks = 200
    vol = _volume(tmp_path / "vol", os.urandom(blocks * BLOCK))
    result = create_backup(dest, "vol1", SnapshotSource("s1", str(vol)), s3_endpoint=s3_endpoint)

    assert block_requests["put"] == blocks == result["stats"]["new_blocks"]
    # the first run of misses, then one in PROBE_EVERY (and the other workers' probes meanwhile)
    most = MISS_RUN + blocks // PROBE_EVERY + IN_FLIGHT
    assert block_requests["exists"] <= most < blocks / 2
    assert _restores_to(result["url"], s3_endpoint, vol, tmp_path / "restored")


def test_data_the_s3_store_holds_is_found_after_a_run_of_new_blocks(s3_endpoint, s3_bucket, tmp_path, block_requests):
    dest = f"s3://{s3_bucket}@us-east-1/backups"
    init_store(dest, secret=None, s3_endpoint=s3_endpoint, block_size=BLOCK)
    old = os.urandom(120 * BLOCK)
    first = _volume(tmp_path / "first", old)
    create_backup(dest, "vol1", SnapshotSource("s1", str(first)), s3_endpoint=s3_endpoint)

    # another volume: the same data alone is found block by block, nothing is put
    block_requests.clear()
    clone = _volume(tmp_path / "clone", old)
    result = create_backup(dest, "vol2", SnapshotSource("c1", str(clone)), s3_endpoint=s3_endpoint)
    assert (block_requests["put"], block_requests["exists"], result["stats"]["new_blocks"]) == (0, 120, 0)

    # 40 new blocks, then the 120 the store holds: once a probe finds one, every block is asked about again
    block_requests.clear()
    new = 40
    mixed = _volume(tmp_path / "mixed", os.urandom(new * BLOCK), old)
    result = create_backup(dest, "vol3", SnapshotSource("m1", str(mixed)), s3_endpoint=s3_endpoint)
    put_again = block_requests["put"] - new
    assert 0 <= put_again <= PROBE_EVERY + IN_FLIGHT, block_requests
    assert result["stats"]["new_blocks"] == block_requests["put"]
    assert _restores_to(result["url"], s3_endpoint, mixed, tmp_path / "restored")


def test_a_local_store_asks_about_every_new_block(tmp_path, block_requests):
    dest = f"vfs://{tmp_path}/store"
    init_store(dest, secret=None, block_size=BLOCK)
    blocks = 100
    vol = _volume(tmp_path / "vol", os.urandom(blocks * BLOCK))
    create_backup(dest, "vol1", SnapshotSource("s1", str(vol)))
    assert block_requests["exists"] == block_requests["put"] == blocks
