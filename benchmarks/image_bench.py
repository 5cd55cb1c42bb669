#!/usr/bin/env python3
"""Snapshot, incremental backup and restore of an `image` volume, beside a VFS volume (issue 8).

It drives a real daemon (`python -m app daemon --drivers image --drivers vfs`,
its own root and sockets) through the `convoy` CLI, as a user would. Both
back-ends keep their data on a loop-mounted XFS made with reflink=1 on a
preallocated image attached with --direct-io=on, so the figures are a disk's,
not a page cache's; the backup stores and the reference copies are on the
host disk (--workdir), not on that XFS. Per back-end, in each run:

  fill         create a volume of --size-mib, `convoy mount` it (it stays
               mounted, like a running container's: snapshots freeze it) and
               write one file of random data nearly the volume's size (the
               same file in both back-ends), then sync
  full         `convoy snapshot create` + `convoy backup create SNAP --dest vfs://STORE`
  incremental  ten random 1 MiB writes into the file (fsync), then snapshot +
               backup again; `convoy backup inspect URL --json` gives what it
               read (read_bytes), stored (new_bytes) and covered (data_bytes)
  restore      `convoy create NEW --backup URL --driver D`; the restored file's
               sha256 must equal the source's, or the benchmark fails
  cp           the reference: `cp` of the volume's data (the image volume's
               .img file, the VFS volume's file) to the store's disk + sync

Every timed step starts with a cold cache (sync; echo 3 > /proc/sys/vm/drop_caches).
The sequence runs --runs times, each on a fresh XFS, daemon and stores; it
prints per step the median, the min-max spread and the median ratio to the
same run's cp. Everything it made (daemon, mounts, loop devices, files) is
removed even when a step fails. Needs root.

    .venv/bin/python benchmarks/image_bench.py [--size-mib 1024] [--runs 3] [--workdir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import volume_bench  # noqa: E402
from benchmarks.benchlib import LoopFS, write_random_file  # noqa: E402
from benchmarks.volume_bench import CHANGES, MIB, Convoy, clean_up, fillable_bytes, loop_devices, measure  # noqa: E402
from tests.daemon_harness import Daemon  # noqa: E402

BACKENDS = {  # back-end: what its backup and its cp reference are
    "image": "image backup; cp reference: the volume's .img",
    "vfs": "tree backup; cp reference: the file",
}


def image_file(convoy: Convoy, backend: str, name: str, data_file: Path) -> Path:
    """The cp reference of the same data: the image volume's whole .img file, the VFS volume's file."""
    return Path(convoy.json("inspect", name)["backend"]["image"]) if backend == "image" else data_file


def one_run(run: int, size_mib: int, workdir: str | None) -> dict:
    """A fresh XFS, daemon and stores; the same file in an image and a VFS volume."""
    size = size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="convoy-image-bench-", dir=workdir))
    xfs = daemon = None
    try:
        # each back-end's volume and its restored copy: four volumes' worth, and slack
        xfs = LoopFS(work, "xfs", 4 * size + (1 << 30))
        daemon = Daemon(
            work / "daemon",
            "--drivers", "image", "--drivers", "vfs",
            "--driver-opts", f"image.path={xfs.mnt}/images",
            "--driver-opts", f"vfs.path={xfs.mnt}/vfs",
        ).start()
        daemon.wait_ready()
        convoy = Convoy(daemon)
        floor = convoy.floor()
        # mounted like a running container's volumes, from creation to the end
        mountpoints = {}
        for backend in BACKENDS:
            name = f"{backend}{run}"
            convoy("create", name, "--driver", backend, "--size", f"{size_mib}M")
            mountpoints[backend] = convoy("mount", name)
        # the image volume's file system decides how big the file can be; VFS gets the same file
        file_size = fillable_bytes(mountpoints["image"])
        data = work / "data.bin"
        write_random_file(data, file_size)
        rng = random.Random(run)
        offsets = [rng.randrange(0, file_size - MIB) for _ in range(CHANGES)]
        results: dict = {"file_bytes": file_size, "cli_floor": floor}
        for backend in BACKENDS:
            results[backend] = measure(convoy, backend, f"{backend}{run}", mountpoints[backend], data, offsets, work,
                                       reference_of=image_file)
        data.unlink()
        results["daemon_errors"] = [line for line in daemon.log_text().splitlines() if "ERROR" in line or "Traceback" in line]
        return results
    except BaseException:
        if daemon is not None:  # the work directory goes below: show what the daemon said first
            print("daemon log (last lines):\n" + "\n".join(daemon.log_text().splitlines()[-20:]), file=sys.stderr)
        raise
    finally:
        if daemon is not None:
            daemon.stop()
        clean_up(work, xfs)


def report(runs: list[dict], size_mib: int) -> dict:
    heading = (f"convoy image benchmark: {size_mib} MiB volumes, one {runs[0]['file_bytes'] / MIB:.0f} MiB file of random "
               f"data, {len(runs)} run(s), cold cache per step, XFS (reflink) on a direct-I/O loop device, "
               f"vfs:// store on the host disk, {os.cpu_count()} CPUs")
    return volume_bench.report(runs, BACKENDS, heading)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="size of each volume (default 1024)")
    ap.add_argument("--runs", type=int, default=3, help="how many times the whole sequence runs (default 3)")
    ap.add_argument("--workdir", default=None, help="where the XFS image, stores and copies go: the host disk (default: $TMPDIR)")
    ap.add_argument("--json", default=None, help="also write every figure to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: loop devices, mount and drop_caches need it", file=sys.stderr)
        return 2
    before = loop_devices()
    runs = []
    for run in range(1, args.runs + 1):
        print(f"run {run}/{args.runs}...", file=sys.stderr, flush=True)
        runs.append(one_run(run, args.size_mib, args.workdir))
    leaked = sorted(loop_devices() - before)
    summary = report(runs, args.size_mib)
    errors = [line for r in runs for line in r["daemon_errors"]]
    if errors:
        print("\ndaemon log errors:\n  " + "\n  ".join(errors[:20]))
    print(f"loop devices leaked: {len(leaked)}{' ' + ', '.join(leaked) if leaked else ''}")
    if args.json:
        Path(args.json).write_text(json.dumps({"size_mib": args.size_mib, "runs": runs, "summary": summary,
                                               "leaked_loop_devices": leaked}, indent=1) + "\n")
    return 1 if leaked else 0


if __name__ == "__main__":
    raise SystemExit(main())
