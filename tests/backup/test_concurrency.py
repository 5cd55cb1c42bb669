"""Concurrent backups of two volumes to one store; each restores on its own."""

import os
import threading

from app.backup import SnapshotSource, create_backup, restore_backup, verify_backup
from tests.backup.treecheck import describe


def test_two_volumes_backed_up_at_once(dest, tmp_path):
    url, endpoint = dest
    shared = os.urandom(3 << 20)  # both volumes hold this: dedup under concurrency
    vols = {}
    for name in ("vola", "volb"):
        vol = tmp_path / name
        vol.mkdir()
        (vol / "common.bin").write_bytes(shared)
        (vol / "own.bin").write_bytes(os.urandom(4 << 20))
        vols[name] = vol
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def run(name):
        try:
            barrier.wait()
            results[name] = create_backup(url, name, SnapshotSource("s", str(vols[name])), s3_endpoint=endpoint)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in vols]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name, vol in vols.items():
        assert verify_backup(results[name]["url"], s3_endpoint=endpoint)["ok"]
        restore_backup(results[name]["url"], str(tmp_path / f"r-{name}"), s3_endpoint=endpoint)
        assert describe(tmp_path / f"r-{name}") == describe(vol)
