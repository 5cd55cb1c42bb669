#!/usr/bin/env python3
"""Snapshot, incremental backup and restore of an `image` volume, beside a VFS volume, restic and S3 (issues 8, 12).

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
               .img file, the VFS volume's file) to the store's disk + sync;
               then that copy copied back onto the XFS + sync (`cp back`, the
               restore's direction), printed beside the restore (the goal
               stays against cp, as the issue defines it)

Then, in the same run, on the same file (skip with --no-peers / --no-s3):

  restic       (apt-get install restic) a copy of the file on the same XFS, its
               repository on the host disk beside the vfs:// stores: full backup,
               backup after the same ten writes, restore onto the XFS + sync
  s3           a moto_server on 127.0.0.1 (the tests' S3), the daemon pointed at it
               with --s3-endpoint: a VFS volume holding the file, snapshot + full
               backup to s3://bucket@region/backups, restore into a new volume
               (sha256 checked); restic backs up and restores the same file to
               s3:http://127.0.0.1:PORT/bucket2 on the same server; MB/s of each;
               and the endpoint alone: as many bytes PUT and then GET in
               objects of an S3 store's block size through convoy's S3 client,
               without hashing or disk, the ceiling of any client's MB/s there

and prints, beside each figure, issue 12's goal and whether it is met: full and
restore <= 1.25x cp, incremental <= 0.3 s, restic's full >= 4x convoy's, restic
to S3 >= 2x convoy's for backup and restore.

Every timed step starts with a cold cache (sync; echo 3 > /proc/sys/vm/drop_caches), then the
program's own files warm (`convoy info`, `restic version`, untimed), as issue 12 measures.
The sequence runs --runs times, each on a fresh XFS, daemon and stores; it
prints per step the median, the min-max spread and the median ratio to the
same run's cp. Everything it made (daemon, mounts, loop devices, files) is
removed even when a step fails. Needs root. The convoy steps are benchmarks/volume_bench.py's, which
the device-mapper benchmark runs too; restic, S3 and the goals are this file's.

    .venv/bin/python benchmarks/image_bench.py [--size-mib 1024] [--runs 3] [--workdir DIR] [--json FILE]
                                               [--no-peers] [--no-s3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import urllib.request
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import volume_bench  # noqa: E402
from benchmarks.benchlib import LoopFS, Restic  # noqa: E402
from benchmarks.volume_bench import (  # noqa: E402
    MIB,
    BenchError,
    Convoy,
    check_restored,
    clean_up,
    daemon_errors,
    fill_volumes,
    job_seconds,
    loop_devices,
    measure,
    random_writes,
    restore_volume,
    sha256,
    show_daemon_log,
    snapshot_and_backup,
    summarise,
    timed,
)
from tests.daemon_harness import Daemon  # noqa: E402
from tests.moto_server import moto_server  # noqa: E402

BACKENDS = {  # back-end: what its backup and its cp reference are
    "image": "image backup; cp reference: the volume's .img",
    "vfs": "tree backup; cp reference: the file",
}
# issue 12's goals: the step's median ratio to the same run's cp, or its median seconds, at most this
GOALS = {"full": ("x cp", 1.25), "incremental": ("s", 0.30), "restore": ("x cp", 1.25)}
RESTIC_GOALS = {"full": 4.0}  # restic's seconds / convoy's, at least this (median over runs)
S3_GOAL = 2.0  # restic's seconds / convoy's to S3, full backup and restore
S3_REGION = "us-east-1"
# moto accepts any key; the daemon, boto3 and restic all read these
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": S3_REGION}

WORK_PREFIX = "convoy-image-bench-"


def image_file(convoy: Convoy, backend: str, name: str, data_file: Path) -> Path:
    """The cp reference of the same data: the image volume's whole .img file, the VFS volume's file."""
    return Path(convoy.json("inspect", name)["backend"]["image"]) if backend == "image" else data_file


def measure_convoy_s3(convoy: Convoy, name: str, size_mib: int, data: Path, dest: str) -> dict:
    """A VFS volume holding the file: snapshot + full backup to S3, then a restore from it, each cold."""
    convoy("create", name, "--driver", "vfs", "--size", f"{size_mib}M")
    target = Path(convoy("mount", name)) / data.name
    shutil.copyfile(data, target)
    os.sync()
    out: dict = {}
    out["snapshot_full"], snap, backup_seconds, url = snapshot_and_backup(convoy, name, "s3", dest)
    out["full"] = out["snapshot_full"] + backup_seconds
    restored = f"{name}r"
    out["restore"] = restore_volume(convoy, url, restored, "vfs")
    out["jobs"] = job_seconds(convoy, {"backup_full": f"backup of snapshot {snap} ", "restore": f"into volume {restored}"})
    check_restored(convoy, restored, target, "vfs from S3")
    for volume in (restored, name):
        convoy("umount", volume)
    convoy("snapshot", "delete", snap)
    convoy("delete", name, restored)
    return out


def measure_endpoint(endpoint: str, bucket: str, total_bytes: int) -> dict:
    """The endpoint alone: as many bytes as the file, PUT and then GET in objects of an S3
    store's block size, as many at once as a backup runs, through convoy's own S3 client
    (no hashing, no disk). What the endpoint can take is the ceiling of any client's MB/s."""
    from concurrent.futures import ThreadPoolExecutor

    from app.backup.objectstore.s3 import S3Store
    from app.backup.pipeline import worker_count
    from app.backup.urls import parse_store_url

    os.environ.update(S3_CREDENTIALS)  # what the daemon is given; boto3 reads them here too
    store = S3Store(parse_store_url(f"s3://{bucket}@{S3_REGION}/endpoint"), endpoint)
    size = store.default_block_size
    count = -(-total_bytes // size)
    threads = worker_count(store, size, 3)
    pieces = [os.urandom(size) for _ in range(4)]  # each object made unique by its last 8 bytes

    def put(i: int) -> None:
        store.put(f"o{i}", pieces[i % 4][:-8] + i.to_bytes(8, "little"))

    def get(i: int) -> None:
        store.get_at_most(f"o{i}", size, "object", self_checked=True)  # as convoy reads a block

    out = {"object_bytes": size, "threads": threads}
    for step, fn in (("full", put), ("restore", get)):
        with ThreadPoolExecutor(threads) as pool:
            out[step] = timed(lambda pool=pool, fn=fn: list(pool.map(fn, range(count))))[0]
    for i in range(count):  # moto keeps objects until its reset: give the memory back now
        store.delete(f"o{i}")
    return out


def stage_file(data: Path, directory: Path) -> Path:
    """restic's copy of the benchmark's file, on the same XFS as the volumes' (restic reads what convoy reads)."""
    directory.mkdir()
    copy = directory / data.name
    shutil.copyfile(data, copy)
    os.sync()
    return copy


def durable_backup(restic: Restic, source: Path) -> None:
    """restic backs up the file's directory; done when on the disk, as convoy's backup is (it syncs its store)."""
    restic.backup(source.parent)
    os.sync()


def restic_restore(restic: Restic, source: Path, target: Path) -> float:
    """Seconds of a cold `restic restore` into `target` on the XFS until on the disk, as convoy's restore is
    timed; the restored file must equal `source`, or the benchmark fails."""

    def restore() -> None:
        restic.restore(target)
        os.sync()

    seconds, _ = timed(restore, warm=restic.version)
    restored = target / source.relative_to("/")  # restic recreates the file's full path under the target
    if not restored.is_file() or sha256(restored) != sha256(source):
        raise BenchError(f"restic: restored data differs: {restored} is not a copy of {source}")
    shutil.rmtree(target)
    return seconds


def measure_restic(restic: Restic, source: Path, restore_to: Path, offsets: list[int] | None = None) -> dict:
    """restic on the same file: full backup, then (given `offsets`) a backup after the same random writes,
    then a restore of the latest; each from a cold cache."""
    restic.init()
    out: dict = {"full": timed(lambda: durable_backup(restic, source), warm=restic.version)[0]}
    if offsets is not None:
        random_writes(source, offsets)
        out["incremental"] = timed(lambda: durable_backup(restic, source), warm=restic.version)[0]
    out["restore"] = restic_restore(restic, source, restore_to)
    return out


def one_run(run: int, size_mib: int, workdir: str | None, with_restic: bool, with_s3: bool) -> dict:
    """A fresh XFS, daemon and stores; the same file in an image and a VFS volume, then in restic and on S3."""
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=workdir))
    # the moto server (when S3 is measured) outlives the daemon and the clean-up
    with moto_server(work) if with_s3 else nullcontext(None) as endpoint:
        return _one_run(run, size_mib, work, with_restic, endpoint)


def _one_run(run: int, size_mib: int, work: Path, with_restic: bool, endpoint: str | None) -> dict:
    size = size_mib * MIB
    xfs = daemon = None
    try:
        # each back-end's volume and its restored copy: four volumes' worth, and slack
        xfs = LoopFS(work, "xfs", 4 * size + (1 << 30))
        s3_args = ("--s3-endpoint", endpoint) if endpoint else ()
        daemon = Daemon(
            work / "daemon",
            "--drivers", "image", "--drivers", "vfs",
            "--driver-opts", f"image.path={xfs.mnt}/images",
            "--driver-opts", f"vfs.path={xfs.mnt}/vfs",
            *s3_args,
            env=S3_CREDENTIALS,
        ).start()
        daemon.wait_ready()
        convoy = Convoy(daemon)
        floor = convoy.floor()
        # the image volume's file system decides how big the file can be; VFS gets the same file
        mountpoints, data, offsets = fill_volumes(convoy, {b: f"{b}{run}" for b in BACKENDS}, size_mib, work, run)
        results: dict = {"file_bytes": data.stat().st_size, "cli_floor": floor}
        for backend in BACKENDS:
            results[backend] = measure(convoy, backend, f"{backend}{run}", mountpoints[backend], data, offsets, work,
                                       reference_of=image_file, copy_back_to=xfs.mnt)
        source = stage_file(data, xfs.mnt / "restic-src") if with_restic else None
        if endpoint:
            buckets = s3_buckets(endpoint, run)
            results["s3"] = {"convoy": measure_convoy_s3(convoy, f"s3v{run}", size_mib, data,
                                                         f"s3://{buckets[0]}@{S3_REGION}/backups")}
            results["s3"]["endpoint"] = measure_endpoint(endpoint, buckets[2], results["file_bytes"])
            if source:
                restic = Restic(f"s3:{endpoint}/{buckets[1]}", work / "restic-cache-s3", S3_CREDENTIALS)
                results["s3"]["restic"] = measure_restic(restic, source, xfs.mnt / "restic-restore-s3")
            # moto keeps every object (in memory or its temporary files) until reset: 2 GiB of disk by now
            reset = urllib.request.Request(endpoint + "/moto-api/reset", method="POST")  # noqa: S310 - our loopback http
            urllib.request.urlopen(reset, timeout=60).close()  # noqa: S310
        if source:  # last: its random writes change restic's copy of the file
            restic = Restic(str(work / "restic-repo"), work / "restic-cache")
            results["restic"] = measure_restic(restic, source, xfs.mnt / "restic-restore", offsets)
            results["restic_version"] = restic.version()
            shutil.rmtree(work / "restic-repo")  # its 1 GiB is not needed any more
        data.unlink()
        results["daemon_errors"] = daemon_errors(daemon)
        return results
    except BaseException:
        show_daemon_log(daemon)
        raise
    finally:
        if daemon is not None:
            daemon.stop()
        clean_up(work, xfs)


def s3_buckets(endpoint: str, run: int) -> tuple[str, str, str]:
    """convoy's bucket, restic's and the endpoint measure's, fresh on the endpoint."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=S3_REGION,
                          aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    names = (f"convoy-bench-{run}", f"restic-bench-{run}", f"endpoint-bench-{run}")
    for name in names:
        client.create_bucket(Bucket=name)
    return names


def report(runs: list[dict], size_mib: int) -> dict:
    heading = (f"convoy image benchmark: {size_mib} MiB volumes, one {runs[0]['file_bytes'] / MIB:.0f} MiB file of random "
               f"data, {len(runs)} run(s), cold cache per step, XFS (reflink) on a direct-I/O loop device, "
               f"vfs:// store on the host disk, {os.cpu_count()} CPUs")
    summary = volume_bench.report(runs, BACKENDS, heading, goal=cp_goal)
    if "restic" in runs[0]:
        summary["restic"] = report_restic(runs)
    if "s3" in runs[0]:
        summary["s3"] = report_s3(runs)
    return summary


def cp_goal(step: str, stats: dict) -> str:
    if step not in GOALS:
        return ""
    unit, bound = GOALS[step]
    value = stats["ratio_to_cp"] if unit == "x cp" else stats["median"]
    return f"<= {bound:.2f} {unit}: {_met(value <= bound)}"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _seconds(values: list[float]) -> str:
    """median [min-max]"""
    return f"{statistics.median(values):6.2f} [{min(values):.2f}-{max(values):.2f}]"


def report_restic(runs: list[dict]) -> dict:
    """restic's seconds beside each convoy back-end's on the same file, with restic/convoy (how many times faster)."""
    summary: dict = {}
    print(f"\n== {runs[0]['restic_version']} on the same file, same XFS, cold cache; its repository on the host disk "
          f"beside the vfs:// stores; restic/convoy = median over runs of (restic's s / convoy's s), >1: convoy faster")
    print(f"{'step':22}{'restic s [min-max]':>21}" + "".join(f"{'/ ' + b:>9}" for b in BACKENDS) + "  goal")
    for step, label in (("full", "full"), ("incremental", "incr. (10 MiB changed)"), ("restore", "restore")):
        restic = [r["restic"][step] for r in runs]
        ratios = {b: statistics.median(r["restic"][step] / r[b][step] for r in runs) for b in BACKENDS}
        summary[step] = {"restic": summarise(restic), "restic_over_convoy": ratios}
        goal = ""
        if step in RESTIC_GOALS:
            bound = RESTIC_GOALS[step]
            goal = f">= {bound:g}x: " + ", ".join(f"{b} {_met(ratios[b] >= bound)}" for b in BACKENDS)
        print(f"{label:22}{_seconds(restic):>21}" + "".join(f"{ratios[b]:9.2f}" for b in BACKENDS) + f"  {goal}")
    return summary


def report_s3(runs: list[dict]) -> dict:
    """convoy (a VFS volume) and restic to the same moto server: seconds, MB/s and restic/convoy."""
    summary: dict = {}
    mb = runs[0]["file_bytes"] / 1e6
    with_restic = "restic" in runs[0]["s3"]
    print(f"\n== S3: moto_server on 127.0.0.1, the same {mb:.0f} MB file; convoy: a VFS volume, snapshot + full backup "
          f"to s3://bucket@{S3_REGION}/backups, restore into a new volume"
          + ("; restic: s3:http://127.0.0.1:PORT/bucket" if with_restic else ""))
    header = f"{'step':14}{'convoy s [min-max]':>21}{'MB/s':>7}"
    if with_restic:
        header += f"{'restic s [min-max]':>21}{'MB/s':>7}{'restic/convoy':>15}  goal"
    print(header)
    for step in ("full", "restore"):
        ours = [r["s3"]["convoy"][step] for r in runs]
        summary[step] = {"convoy": summarise(ours), "convoy_mb_s": mb / statistics.median(ours)}
        line = f"{step:14}{_seconds(ours):>21}{summary[step]['convoy_mb_s']:7.1f}"
        if with_restic:
            theirs = [r["s3"]["restic"][step] for r in runs]
            ratio = statistics.median(r["s3"]["restic"][step] / r["s3"]["convoy"][step] for r in runs)
            summary[step].update(restic=summarise(theirs), restic_mb_s=mb / statistics.median(theirs), restic_over_convoy=ratio)
            line += f"{_seconds(theirs):>21}{summary[step]['restic_mb_s']:7.1f}{ratio:15.2f}"
            line += f"  >= {S3_GOAL:g}x: {_met(ratio >= S3_GOAL)}"
        print(line)
    ceiling = runs[0]["s3"]["endpoint"]
    print(f"the endpoint alone (convoy's S3 client, PUT then GET of as many bytes in {ceiling['object_bytes'] // MIB} MiB "
          f"objects, {ceiling['threads']} at once, no hashing or disk): convoy's share of what the endpoint can take")
    for step in ("full", "restore"):
        alone = [r["s3"]["endpoint"][step] for r in runs]
        share = statistics.median(r["s3"]["endpoint"][step] / r["s3"]["convoy"][step] for r in runs)
        summary[step].update(endpoint=summarise(alone), endpoint_mb_s=mb / statistics.median(alone),
                             convoy_share_of_endpoint=share)
        print(f"{('PUT' if step == 'full' else 'GET'):14}{_seconds(alone):>21}{summary[step]['endpoint_mb_s']:7.1f}"
              f"  convoy at {share:.0%} of it")
    jobs = {step: statistics.median(r["s3"]["convoy"]["jobs"][step] for r in runs) for step in runs[0]["s3"]["convoy"]["jobs"]}
    snapshot = statistics.median(r["s3"]["convoy"]["snapshot_full"] for r in runs)
    summary["convoy_job_seconds"] = jobs
    print(f"of convoy's full: snapshot {snapshot:.2f} s; the daemon's job (median): "
          + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in jobs.items()))
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="size of each volume (default 1024)")
    ap.add_argument("--runs", type=int, default=3, help="how many times the whole sequence runs (default 3)")
    ap.add_argument("--workdir", default=None, help="where the XFS image, stores and copies go: the host disk (default: $TMPDIR)")
    ap.add_argument("--json", default=None, help="also write every figure to this file")
    ap.add_argument("--no-peers", action="store_true", help="skip restic (on the local disk and on S3)")
    ap.add_argument("--no-s3", action="store_true", help="skip the backup and restore to the moto S3 server")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: loop devices, mount and drop_caches need it", file=sys.stderr)
        return 2
    if not args.no_peers and not shutil.which("restic"):
        print("restic is missing: apt-get install restic, or pass --no-peers", file=sys.stderr)
        return 2
    # at most: the XFS image, the file, a vfs:// store, a cp copy or moto's 2 GiB, restic's repository
    need = 7 * args.size_mib * MIB + (1 << 30)
    st = os.statvfs(args.workdir or tempfile.gettempdir())
    if st.f_bavail * st.f_frsize < need:
        print(f"{args.workdir or tempfile.gettempdir()} has {st.f_bavail * st.f_frsize / (1 << 30):.1f} GiB free; a run "
              f"needs {need / (1 << 30):.1f} GiB: free some, or pass --workdir on a larger disk", file=sys.stderr)
        return 2
    before = loop_devices(f"/{WORK_PREFIX}")
    runs = []
    for run in range(1, args.runs + 1):
        print(f"run {run}/{args.runs}...", file=sys.stderr, flush=True)
        runs.append(one_run(run, args.size_mib, args.workdir, not args.no_peers, not args.no_s3))
    leaked = sorted(loop_devices(f"/{WORK_PREFIX}") - before)
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
