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
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.benchlib import LoopFS, drop_caches, write_random_file  # noqa: E402
from tests.daemon_harness import CONVOY, Daemon, mounted_points  # noqa: E402

MIB = 1 << 20
BACKENDS = ("image", "vfs")
SHOWN = (  # (step, label) in the report; "full" and "incremental" are snapshot + backup
    ("full", "full (snap+backup)"),
    ("snapshot_full", "  of which snapshot"),
    ("incremental", "incr. (snap+backup)"),
    ("snapshot_incr", "  of which snapshot"),
    ("restore", "restore"),
    ("cp", "cp + sync (ref.)"),
)
FS_ROOM = 16 * MIB  # left free in the volume's file system
CHANGES = 10  # random 1 MiB writes before the incremental backup
CLI_TIMEOUT = 1800


class BenchError(SystemExit):
    """A step failed or gave wrong data: the benchmark stops loudly (after cleaning up)."""


def sh(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


def timed(fn) -> tuple[float, object]:
    """(seconds, result) of fn() started with a cold cache."""
    drop_caches()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def loop_devices() -> set[str]:
    """Every attached loop device, to check that none leaks."""
    return {line.split(":")[0] for line in sh("losetup", "-a").splitlines() if line}


class Convoy:
    """The `convoy` CLI against one daemon's control socket."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon

    def __call__(self, *args: str) -> str:
        r = subprocess.run(
            [*CONVOY, "--socket", str(self.daemon.socket), *args],
            cwd=REPO, capture_output=True, text=True, timeout=CLI_TIMEOUT,
        )
        if r.returncode != 0:
            log_tail = "\n".join(self.daemon.log_text().splitlines()[-20:])
            raise BenchError(f"convoy {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}\n"
                             f"daemon log (last lines):\n{log_tail}")
        return r.stdout.strip()

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "--json"))


def random_writes(path: Path, offsets: list[int]) -> None:
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset)
            f.write(os.urandom(MIB))
        f.flush()
        os.fsync(f.fileno())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def touched_bytes(offsets: list[int], block_size: int) -> int:
    """The store's blocks the 1 MiB writes overlap, in the file: the least a block-level
    incremental can read (an unaligned write straddles two blocks)."""
    return block_size * len({b for o in offsets for b in range(o // block_size, (o + MIB - 1) // block_size + 1)})


def fillable_bytes(mountpoint: str) -> int:
    """What one file can take in the volume's file system, leaving FS_ROOM, whole MiB."""
    st = os.statvfs(mountpoint)
    return (st.f_bavail * st.f_frsize - FS_ROOM) // MIB * MIB


def copy_reference(source: Path, dest_dir: Path) -> None:
    """What a user would do without convoy: cp the data to the other disk and sync."""
    sh("cp", "--sparse=auto", str(source), str(dest_dir / source.name))
    os.sync()


def seconds_of(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_pair(first, second) -> tuple[float, object, float, object]:
    """Two steps timed one after the other from one cold cache: (t1, r1, t2, r2)."""
    drop_caches()
    start = time.perf_counter()
    r1 = first()
    middle = time.perf_counter()
    r2 = second(r1)
    return middle - start, r1, time.perf_counter() - middle, r2


def measure(convoy: Convoy, backend: str, name: str, mountpoint: str, data: Path, offsets: list[int], work: Path) -> dict:
    """Full backup, incremental backup, restore and the cp reference for one mounted volume."""
    store = work / f"store-{backend}"  # one store per back-end: no block is shared between them
    dest = f"vfs://{store}"
    target = Path(mountpoint) / "data.bin"
    shutil.copyfile(data, target)
    os.sync()
    out: dict = {}

    def snapshot(label: str):
        return lambda: convoy("snapshot", "create", name, "--name", f"{name}-{label}")

    def backup(snap: str) -> str:
        return convoy("backup", "create", snap, "--dest", dest)

    out["snapshot_full"], snap1, out["backup_full"], url1 = timed_pair(snapshot("s1"), backup)
    out["full"] = out["snapshot_full"] + out["backup_full"]

    random_writes(target, offsets)
    out["snapshot_incr"], snap2, out["backup_incr"], url2 = timed_pair(snapshot("s2"), backup)
    out["incremental"] = out["snapshot_incr"] + out["backup_incr"]
    out["full_stats"] = convoy.json("backup", "inspect", url1)["stats"]
    incr = convoy.json("backup", "inspect", url2)
    out["incr_stats"] = incr["stats"]
    out["block_size"] = incr["block_size"]
    out["touched_bytes"] = touched_bytes(offsets, incr["block_size"])

    restored = f"{name}r"

    def restore() -> None:
        convoy("create", restored, "--backup", url2, "--driver", backend)
        os.sync()  # a restore is done when its data is on the disk

    out["restore"], _ = timed(restore)

    # the reference on the same data: the image file itself for `image`, the file for `vfs`
    source = Path(convoy.json("inspect", name)["backend"]["image"]) if backend == "image" else target
    copies = work / f"cp-{backend}"
    copies.mkdir()
    out["cp"], _ = timed(lambda: copy_reference(source, copies))
    out["cp_bytes"] = source.stat().st_size
    shutil.rmtree(copies)

    # the daemon's own time for each job: the CLI polls a job every 0.2 s, which a fast job shows
    jobs = {job["description"]: job["finished"] - job["started"] for job in convoy.json("job", "list") if job["finished"]}
    out["jobs"] = {
        "backup_full": _job_time(jobs, f"backup of snapshot {snap1} "),
        "backup_incr": _job_time(jobs, f"backup of snapshot {snap2} "),
        "restore": _job_time(jobs, f"into volume {restored}"),
    }

    # a benchmark that restores wrong data must fail loudly
    expected = sha256(target)
    restored_file = Path(convoy("mount", restored)) / "data.bin"
    got = sha256(restored_file) if restored_file.is_file() else "missing"
    if got != expected:
        raise BenchError(f"{backend}: restored data differs: {restored_file} sha256 {got}, source {target} {expected}")
    out["sha256_ok"] = True

    for volume in (restored, name):
        convoy("umount", volume)
    for snap in (snap2, snap1):
        convoy("snapshot", "delete", snap)
    convoy("delete", name, restored)
    shutil.rmtree(store)
    return out


def _job_time(jobs: dict[str, float], part: str) -> float:
    found = [seconds for description, seconds in jobs.items() if part in description]
    if len(found) != 1:
        raise BenchError(f"expected one job whose description has {part!r}, found {len(found)}: {sorted(jobs)}")
    return found[0]


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
        # the fixed cost of any one command (interpreter start, imports, one request), warm
        floor = statistics.median(seconds_of(lambda: convoy("info")) for _ in range(3))
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
            results[backend] = measure(convoy, backend, f"{backend}{run}", mountpoints[backend], data, offsets, work)
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


def clean_up(work: Path, xfs: LoopFS | None) -> None:
    """Whatever a failed run left: mounts under `work`, loop devices on its images, the XFS, the files."""
    from app.fs import loop

    prefix = str(work) + "/"
    for point in sorted(mounted_points(), reverse=True):
        if point.startswith(prefix) and (xfs is None or point != str(xfs.mnt)):
            subprocess.run(["umount", point], check=False, capture_output=True)
    if xfs is not None:
        images = str(xfs.mnt) + "/"
        for device, backing in loop.attached().items():
            if backing.startswith(images):
                subprocess.run(["losetup", "-d", device], check=False, capture_output=True)
        xfs.close()
    shutil.rmtree(work, ignore_errors=True)


def summarise(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def report(runs: list[dict], size_mib: int) -> dict:
    summary: dict = {}
    print(f"\nconvoy image benchmark: {size_mib} MiB volumes, one {runs[0]['file_bytes'] / MIB:.0f} MiB file of random data, "
          f"{len(runs)} run(s), cold cache per step, XFS (reflink) on a direct-I/O loop device, "
          f"vfs:// store on the host disk, {os.cpu_count()} CPUs")
    print(f"one `convoy info` (the CLI's fixed cost per command, in every step below): "
          f"{statistics.median(r['cli_floor'] for r in runs):.2f} s")
    print("seconds: median [min-max]; x cp = median over runs of (step / that run's cp of the same data)")
    for backend in BACKENDS:
        rows = [r[backend] for r in runs]
        summary[backend] = {}
        what = "the volume's .img" if backend == "image" else "the file"
        print(f"\n== {backend} volume ({'image backup' if backend == 'image' else 'tree backup'}; cp reference: {what})")
        print(f"{'step':22}{'median':>8}  {'min-max':>13}  {'x cp':>6}")
        for step, label in SHOWN:
            stats = summarise([r[step] for r in rows])
            stats["ratio_to_cp"] = statistics.median(r[step] / r["cp"] for r in rows)
            summary[backend][step] = stats
            spread = f"{stats['min']:.2f}-{stats['max']:.2f}"
            print(f"{label:22}{stats['median']:8.2f}  {spread:>13}  {stats['ratio_to_cp']:6.2f}")
        jobs = {step: statistics.median(r["jobs"][step] for r in rows) for step in rows[0]["jobs"]}
        summary[backend]["job_seconds"] = jobs
        print("of which the daemon's job (median): " + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in jobs.items()))
        for kind in ("full_stats", "incr_stats"):
            read = [r[kind]["read_bytes"] / MIB for r in rows]
            new = [r[kind]["new_bytes"] / MIB for r in rows]
            data = [r[kind]["data_bytes"] / MIB for r in rows]
            summary[backend][kind] = {"read_mib": read, "new_mib": new, "data_mib": data}
            label = "full" if kind == "full_stats" else "incremental"
            print(f"{label} backup read {_mibs(read)} MiB, stored {_mibs(new)} MiB new, of {_mibs(data)} MiB of data")
        touched = _mibs([r["touched_bytes"] / MIB for r in rows])
        print(f"the {CHANGES} writes changed {CHANGES} MiB, overlapping {touched} MiB of the store's "
              f"{rows[0]['block_size'] / MIB:g} MiB blocks (the floor for a block-level read)")
        print("restored file sha256 equals the source's: " + ("yes" if all(r["sha256_ok"] for r in rows) else "NO"))
    return summary


def _mibs(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


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
