#!/usr/bin/env python3
"""Snapshot + backup + restore benchmark (issue 4), with restic and borg on the same data.

For each file system (XFS with reflink, then ext4) it makes a loop-mounted
file system as `vfs.path`, a volume holding one file of random data (1 GiB by
default), and a local `vfs://` store on the host disk, then times, each with
a cold cache (`echo 3 > /proc/sys/vm/drop_caches` first):

  full         snapshot (reflink or copy) + full backup
  incremental  ten random 1 MiB writes, then snapshot + backup
  restore      the second backup into a new, empty volume directory

and reports the store size after both backups. When `restic` and `borg`
are installed (apt-get install restic borgbackup) they back up the same
volume at the same two points and restore, in the same run, and the ratios
are printed. Needs root (loop devices, mount, drop_caches).

    .venv/bin/python benchmarks/backup_bench.py [--size-mib 1024] [--fs xfs,ext4] [--no-peers] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.backup import SnapshotSource, create_backup, restore_backup, verify_backup
from app.storage.vfs_snapshot import snapshot_directory
from benchmarks.benchlib import LoopFS, Restic, drop_caches, write_random_file

GOALS = {"full": 1.5, "incremental": 0.3, "restore": 1.0, "store_gib": 1.03}
MIB = 1 << 20


def sh(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed(fn) -> float:
    drop_caches()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def random_writes(path: Path, size: int, count: int = 10, rng: random.Random | None = None) -> None:
    rng = rng or random.Random(4)
    with open(path, "r+b") as f:
        for _ in range(count):
            f.seek(rng.randrange(0, size - MIB))
            f.write(os.urandom(MIB))


def run_ours(fs: LoopFS, store: Path, size: int) -> dict:
    vfs = fs.mnt / "vfs"
    vol = vfs / "vol"
    vol.mkdir(parents=True)
    write_random_file(vol / "data.bin", size)
    snaps = vfs / ".snapshots" / "vol"
    dest = f"vfs://{store}"
    out: dict = {}

    def full():
        out["snapshot_method"] = snapshot_directory(str(vol), str(snaps / "snap1"))
        out["full_result"] = create_backup(dest, "vol", SnapshotSource("snap1", str(snaps / "snap1")))

    out["full"] = timed(full)
    random_writes(vol / "data.bin", size)

    def incremental():
        snapshot_directory(str(vol), str(snaps / "snap2"))
        out["inc_result"] = create_backup(
            dest,
            "vol",
            SnapshotSource("snap2", str(snaps / "snap2")),
            previous_snapshot=SnapshotSource("snap1", str(snaps / "snap1")),
        )

    out["incremental"] = timed(incremental)
    out["store_bytes"] = dir_bytes(store)
    target = vfs / "restored"
    out["restore"] = timed(lambda: restore_backup(out["inc_result"]["url"], str(target)))
    t = time.perf_counter()
    os.sync()
    out["restore_sync_extra"] = time.perf_counter() - t
    if sh("cmp", str(vol / "data.bin"), str(target / "data.bin")).returncode != 0:
        raise SystemExit("restored data differs")
    out["verified"] = verify_backup(out["inc_result"]["url"])["ok"]
    shutil.rmtree(target)
    return out


def run_restic(vol: Path, work: Path, after_writes) -> dict:
    repo = work / "restic-repo"
    restic = Restic(str(repo), work / "restic-cache")
    restic.init()
    out = {"full": timed(lambda: restic.backup(vol))}
    after_writes()
    out["incremental"] = timed(lambda: restic.backup(vol))
    out["store_bytes"] = dir_bytes(repo)
    target = work / "restic-restore"
    out["restore"] = timed(lambda: restic.restore(target))
    shutil.rmtree(target)
    shutil.rmtree(repo)
    shutil.rmtree(work / "restic-cache")
    return out


def run_borg(vol: Path, work: Path, after_writes) -> dict:
    repo = work / "borg-repo"
    env = {**os.environ, "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}
    sh("borg", "init", "-e", "none", str(repo), env=env)
    out = {"full": timed(lambda: sh("borg", "create", f"{repo}::a", str(vol), env=env))}
    after_writes()
    out["incremental"] = timed(lambda: sh("borg", "create", f"{repo}::b", str(vol), env=env))
    out["store_bytes"] = dir_bytes(repo)
    target = work / "borg-restore"
    target.mkdir()
    out["restore"] = timed(lambda: sh("borg", "extract", f"{repo}::b", env=env, cwd=target))
    shutil.rmtree(target)
    shutil.rmtree(repo)
    return out


def run_peer(name: str, fs: LoopFS, work: Path, size: int) -> dict:
    vol = fs.mnt / f"peer-{name}"
    vol.mkdir()
    write_random_file(vol / "data.bin", size)
    writes = lambda: random_writes(vol / "data.bin", size)  # noqa: E731 - same writes as ours
    try:
        return (run_restic if name == "restic" else run_borg)(vol, work, writes)
    finally:
        shutil.rmtree(vol)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--fs", default="xfs,ext4")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--workdir", default=None, help="where stores and loop images go (host disk)")
    ap.add_argument("--repeat", type=int, default=1, help="run ours N times (fresh file system each) and report the median")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: loop devices, mount and drop_caches need it", file=sys.stderr)
        return 2
    size = args.size_mib * MIB
    peers = [] if args.no_peers else [p for p in ("restic", "borg") if shutil.which(p)]
    work = Path(tempfile.mkdtemp(prefix="convoy-bench-", dir=args.workdir))
    results: dict = {"size_bytes": size, "cpus": os.cpu_count(), "filesystems": {}}
    try:
        for kind in args.fs.split(","):
            runs = []
            row = {}
            for i in range(args.repeat):
                fs = LoopFS(work, kind, max(4, 3 * size // (1 << 30) + 2) << 30)
                try:
                    store = work / f"store-{kind}-{i}"
                    runs.append(run_ours(fs, store, size))
                    shutil.rmtree(store)
                    if i == 0:
                        for peer in peers:
                            row[peer] = run_peer(peer, fs, work, size)
                finally:
                    fs.close()
                    fs.mnt.rmdir()
            row = {"convoy": median_run(runs), **row}
            results["filesystems"][kind] = row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    if args.json:
        def clean(o):
            return {k: clean(v) for k, v in o.items() if not k.endswith("_result")} if isinstance(o, dict) else o
        Path(args.json).write_text(json.dumps(clean(results), indent=1))
    return 0


def median_run(runs: list[dict]) -> dict:
    """The run with the median full time, with each timing replaced by its median."""
    out = dict(sorted(runs, key=lambda r: r["full"])[len(runs) // 2])
    for key in ("full", "incremental", "restore", "restore_sync_extra"):
        values = sorted(r[key] for r in runs)
        out[key] = values[len(values) // 2]
        out[key + "_all"] = [round(r[key], 3) for r in runs]
    return out


def report(results: dict) -> None:
    size = results["size_bytes"]
    print(f"\nconvoy backup benchmark: one {size / MIB:.0f} MiB file of random data, cold cache, "
          f"local vfs:// store, {results['cpus']} CPUs")
    for kind, row in results["filesystems"].items():
        ours = row["convoy"]
        print(f"\n== vfs.path on {kind} (snapshot: {ours['snapshot_method']})")
        header = f"{'':14}{'full':>9}{'incr.':>9}{'restore':>9}{'store GiB':>11}"
        print(header)
        names = ["convoy"] + [p for p in ("restic", "borg") if p in row]
        for name in names:
            r = row[name]
            print(f"{name:14}{r['full']:9.2f}{r['incremental']:9.2f}{r['restore']:9.2f}{r['store_bytes'] / (1 << 30):11.3f}")
        if kind == "xfs":
            goal = GOALS
            print(f"{'goal':14}{goal['full']:9.2f}{goal['incremental']:9.2f}{goal['restore']:9.2f}{goal['store_gib']:11.3f}")
            ok = (ours["full"] <= goal["full"] and ours["incremental"] <= goal["incremental"]
                  and ours["restore"] <= goal["restore"] and ours["store_bytes"] / (1 << 30) <= goal["store_gib"])
            print(f"goals met: {'yes' if ok else 'NO'}")
        for peer in names[1:]:
            r = row[peer]
            ratios = "  ".join(f"{k} x{r[k] / ours[k]:.1f}" for k in ("full", "incremental", "restore"))
            print(f"{peer} / convoy: {ratios}")
        inc = ours["inc_result"]["stats"]
        if len(ours["full_all"]) > 1:
            print(
                f"convoy runs: full {ours['full_all']}  incremental {ours['incremental_all']}  "
                f"restore {ours['restore_all']} (medians above)"
            )
        print(f"incremental read {inc['read_bytes'] / MIB:.0f} MiB (FIEMAP skipped "
              f"{inc['fiemap_skipped_bytes'] / MIB:.0f} MiB), uploaded {inc['new_blocks']} new blocks; "
              f"restore + sync {ours['restore'] + ours['restore_sync_extra']:.2f} s; verify ok: {ours['verified']}")


if __name__ == "__main__":
    raise SystemExit(main())
