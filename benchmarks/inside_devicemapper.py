#!/usr/bin/env python3
"""Snapshot, full and incremental backup, restore of a devicemapper volume beside an `image` volume (issue 11).

Runs inside the guest kernel (the host has no device-mapper): benchmarks/devicemapper_bench.py boots
the guest and runs it there. Each run starts a real daemon (`python -m app daemon --drivers
devicemapper --drivers image`) and drives it through the `convoy` CLI, as a user would. Both
back-ends keep their data on the guest's scratch disk:

  devicemapper  a thin pool (2 MiB blocks, Convoy's default) on two loop devices over sparse files
  image         image.path on an XFS made with reflink=1 (the image back-end's reflink snapshots),
                on a preallocated file attached with --direct-io=on

A volume of --size-mib on each, mounted throughout like a running container's, gets the same file of
random data; then each step from a cold cache, per benchmarks/volume_bench.py: snapshot + full backup
to a vfs:// store on the scratch disk, ten random 1 MiB writes then snapshot + incremental backup (what
each backup read, from `convoy backup inspect`), restore into a new volume of the same back-end (sha256
checked), and the reference: a cold `cp` of the same file out of the volume to the scratch disk.
--runs times, each with a fresh pool, XFS, daemon and stores; prints median, spread and ratio to cp.

    python benchmarks/inside_devicemapper.py [--size-mib 1024] [--runs 3] [--json FILE]   (root, in the guest)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import volume_bench  # noqa: E402
from benchmarks.benchlib import LoopFS  # noqa: E402
from benchmarks.volume_bench import MIB, BenchError, Convoy, clean_up, loop_devices, measure  # noqa: E402
from tests.daemon_harness import Daemon  # noqa: E402
from tests.guest.inside import dm_daemon, thinpool  # noqa: E402

BACKENDS = {  # back-end: what its snapshot and backup are; the cp reference is the same file for both
    "devicemapper": "thin snapshot; backup of the mapped blocks, then of thin_delta's changed blocks",
    "image": "reflink snapshot of the .img on XFS; image backup, then of the extents the reflinks no longer share",
}
NAMES = {"devicemapper": "dm", "image": "img"}  # volume name prefixes
POOL_METADATA = 64 * MIB


def progress(message: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.0f}s] {message}", file=sys.stderr, flush=True)


def make_pool_devices(work: Path, size: int, name: str) -> thinpool.PoolDevices:
    """Loop devices over sparse files (a trial pool): data for a volume, its restored copy, and slack."""
    data, metadata = work / "pool-data.img", work / "pool-metadata.img"
    subprocess.run(["truncate", "-s", str(2 * size + (1 << 30)), data], check=True)
    subprocess.run(["truncate", "-s", str(POOL_METADATA), metadata], check=True)
    return thinpool.PoolDevices(datadev=thinpool.attach_loop(data), metadatadev=thinpool.attach_loop(metadata), name=name)


def one_run(run: int, size_mib: int, started: float) -> dict:
    """A fresh pool, XFS, daemon and stores; the same file in a devicemapper and an image volume."""
    size = size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="convoy-dm-bench-"))  # TMPDIR: the scratch disk
    xfs = daemon = pool = None
    try:
        pool = make_pool_devices(work, size, f"convoy-bench-{os.getpid()}-{run}")
        xfs = LoopFS(work, "xfs", 2 * size + (1 << 30))  # the image volume and its restored copy
        daemon = Daemon(
            work / "daemon",
            *dm_daemon.daemon_args(pool),
            "--drivers", "image", "--driver-opts", f"image.path={xfs.mnt}/images",
        ).start(wait=False)
        daemon.wait_listening(120)  # the daemon's start is slow under emulation
        daemon.wait_ready(120)
        progress(f"run {run}: daemon ready", started)
        convoy = Convoy(daemon)
        floor = convoy.floor()
        # the smaller file system decides how big the file can be; both volumes get the same file
        names = {backend: f"{NAMES[backend]}{run}" for backend in BACKENDS}
        mountpoints, data, offsets = volume_bench.fill_volumes(convoy, names, size_mib, work, run)
        results: dict = {"file_bytes": data.stat().st_size, "cli_floor": floor}
        for backend in BACKENDS:
            progress(f"run {run}: {backend}", started)
            results[backend] = measure(convoy, backend, names[backend], mountpoints[backend], data, offsets, work)
        data.unlink()
        results["daemon_errors"] = volume_bench.daemon_errors(daemon)
        return results
    except BaseException:
        volume_bench.show_daemon_log(daemon)
        raise
    finally:
        if daemon is not None:
            daemon.stop()
            daemon.cleanup_mounts()
        if pool is not None:
            thinpool.remove_pool(pool)  # the pool, its thin devices and their mounts, then its loop devices
        clean_up(work, xfs)


def report(runs: list[dict], size_mib: int) -> dict:
    heading = (f"convoy device-mapper benchmark, inside the guest kernel (QEMU TCG: an emulated CPU; compare "
               f"figures within this table only): {size_mib} MiB volumes, one {runs[0]['file_bytes'] / MIB:.0f} MiB "
               f"file of random data, {len(runs)} run(s), cold cache per step, vfs:// store and cp copies on the "
               f"scratch disk, {os.cpu_count()} CPUs")
    return volume_bench.report(runs, BACKENDS, heading)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="size of each volume (default 1024)")
    ap.add_argument("--runs", type=int, default=3, help="how many times the whole sequence runs (default 3)")
    ap.add_argument("--json", default=None, help="also write every figure to this file")
    args = ap.parse_args()
    if os.geteuid() != 0 or os.environ.get("CONVOY_GUEST") != "1":
        print("runs as root inside the guest kernel: use benchmarks/devicemapper_bench.py", file=sys.stderr)
        return 2
    if args.size_mib < 64:
        raise BenchError(f"--size-mib {args.size_mib}: give at least 64, room for the file system and ten 1 MiB writes")
    started = time.monotonic()
    before = loop_devices()
    runs = []
    for run in range(1, args.runs + 1):
        runs.append(one_run(run, args.size_mib, started))
        progress(f"run {run} done: " + "; ".join(
            f"{backend} " + " ".join(f"{step} {runs[-1][backend][step]:.1f}" for step, _ in volume_bench.SHOWN)
            for backend in BACKENDS), started)
    leaked = sorted(loop_devices() - before)
    summary = report(runs, args.size_mib)
    errors = [line for r in runs for line in r["daemon_errors"]]
    if errors:
        print("\ndaemon log errors:\n  " + "\n  ".join(errors[:20]))
    print(f"loop devices leaked: {len(leaked)}{' ' + ', '.join(leaked) if leaked else ''}")
    print(f"benchmark took {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"size_mib": args.size_mib, "runs": runs, "summary": summary,
                                               "leaked_loop_devices": leaked, "emulated": "QEMU TCG"}, indent=1) + "\n")
    return 1 if leaked else 0


if __name__ == "__main__":
    raise SystemExit(main())
