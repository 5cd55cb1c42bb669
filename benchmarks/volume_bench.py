"""One volume's measured sequence, driven through the `convoy` CLI as a user would, and its report.

Shared by the benchmarks that compare back-ends on the same data (image_bench.py on the host,
inside_devicemapper.py in the guest kernel). For a mounted volume holding a copy of one file of
random data, each step from a cold cache:

  full         `convoy snapshot create` + `convoy backup create SNAP --dest vfs://STORE`
  incremental  ten random 1 MiB writes into the file (fsync), then snapshot + backup again;
               `convoy backup inspect URL --json` gives what it read, stored and covered
  restore      `convoy create NEW --backup URL --driver D` + sync; the restored file's sha256
               must equal the source's, or the benchmark fails
  cp           the reference: `cp` of the volume's data to the store's disk + sync
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.benchlib import LoopFS, drop_caches, write_random_file
from tests.daemon_harness import CONVOY, REPO, Daemon, mounted_points

MIB = 1 << 20
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

# Where the cp reference reads: (convoy, backend, volume name, the data file in the volume) -> path
ReferenceOf = Callable[["Convoy", str, str, Path], Path]
# A step's goal, shown beside it in the report: (step, its summarised figures) -> "" or e.g. "<= 1.25 x cp: met"
GoalOf = Callable[[str, dict], str]


class BenchError(SystemExit):
    """A step failed or gave wrong data: the benchmark stops loudly (after cleaning up)."""


def sh(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


def cold_cache(warm=None) -> None:
    """Drop the page cache; then `warm()`, untimed: the program's own files back in it (a user's
    `convoy` or `restic` has run before; the issue measures with the CLI's modules warm), the data not."""
    drop_caches()
    if warm is not None:
        warm()


def timed(fn, warm=None) -> tuple[float, object]:
    """(seconds, result) of fn() started with a cold cache (see cold_cache)."""
    cold_cache(warm)
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def timed_pair(first, second, warm=None) -> tuple[float, object, float, object]:
    """Two steps timed one after the other from one cold cache: (t1, r1, t2, r2)."""
    cold_cache(warm)
    start = time.perf_counter()
    r1 = first()
    middle = time.perf_counter()
    r2 = second(r1)
    return middle - start, r1, time.perf_counter() - middle, r2


def seconds_of(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def loop_devices(marker: str = "") -> set[str]:
    """Every attached loop device whose `losetup -a` line has `marker` (a benchmark's work directory's
    prefix: other programs' loop devices, attached while it runs, are not its leaks), to check that none leaks."""
    return {line.split(":")[0] for line in sh("losetup", "-a").splitlines() if line and marker in line}


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

    def warm(self) -> None:
        """Run a command that reads nothing of a volume: the interpreter and the CLI's modules cached."""
        self("info")

    def floor(self) -> float:
        """The fixed cost of any one command (interpreter start, imports, one request), warm: median of 3."""
        return statistics.median(seconds_of(lambda: self("info")) for _ in range(3))


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


def fill_volumes(convoy: Convoy, names: dict[str, str], size_mib: int, work: Path,
                 run: int) -> tuple[dict[str, str], Path, list[int]]:
    """Create and mount a volume per back-end (`names`: back-end -> volume name), mounted like a running
    container's from creation to the end; then one file of random data that the smallest file system can
    take (every volume gets the same file), and this run's offsets of the incremental's writes:
    (mountpoints, the file, offsets)."""
    mountpoints = {}
    for backend, name in names.items():
        convoy("create", name, "--driver", backend, "--size", f"{size_mib}M")
        mountpoints[backend] = convoy("mount", name)
    file_size = min(fillable_bytes(point) for point in mountpoints.values())
    data = work / "data.bin"
    write_random_file(data, file_size)
    rng = random.Random(run)
    return mountpoints, data, [rng.randrange(0, file_size - MIB) for _ in range(CHANGES)]


def daemon_errors(daemon: Daemon) -> list[str]:
    """The daemon log's error lines, for the report."""
    return [line for line in daemon.log_text().splitlines() if "ERROR" in line or "Traceback" in line]


def show_daemon_log(daemon: Daemon | None) -> None:
    """On a failed run, before its work directory (and the daemon's log) goes: what the daemon said last."""
    if daemon is not None:
        print("daemon log (last lines):\n" + "\n".join(daemon.log_text().splitlines()[-20:]), file=sys.stderr)


def copy_reference(source: Path, dest_dir: Path) -> None:
    """What a user would do without convoy: cp the data to the other disk and sync."""
    sh("cp", "--sparse=auto", str(source), str(dest_dir / source.name))
    os.sync()


def the_data_file(_convoy: Convoy, _backend: str, _name: str, data_file: Path) -> Path:
    """The default cp reference: the same file, read through the volume's own file system."""
    return data_file


def snapshot_and_backup(convoy: Convoy, name: str, label: str, dest: str) -> tuple[float, str, float, str]:
    """`convoy snapshot create` then `convoy backup create` from one cold cache: (snapshot s, snapshot, backup s, URL)."""
    return timed_pair(lambda: convoy("snapshot", "create", name, "--name", f"{name}-{label}"),
                      lambda snap: convoy("backup", "create", snap, "--dest", dest), warm=convoy.warm)


def restore_volume(convoy: Convoy, url: str, restored: str, backend: str) -> float:
    """Seconds of `convoy create --backup` from a cold cache until the data is on the disk."""

    def restore() -> None:
        convoy("create", restored, "--backup", url, "--driver", backend)
        os.sync()  # a restore is done when its data is on the disk

    return timed(restore, warm=convoy.warm)[0]


def check_restored(convoy: Convoy, restored: str, source: Path, label: str) -> None:
    """A benchmark that restores wrong data must fail loudly: the restored volume's file must equal `source`."""
    expected = sha256(source)
    restored_file = Path(convoy("mount", restored)) / source.name
    got = sha256(restored_file) if restored_file.is_file() else "missing"
    if got != expected:
        raise BenchError(f"{label}: restored data differs: {restored_file} sha256 {got}, source {source} {expected}")


def job_seconds(convoy: Convoy, parts: dict[str, str]) -> dict[str, float]:
    """The daemon's own time of each job, found by a part of its description (the rest of a step is the
    snapshot, the CLI's start and its requests)."""
    jobs = {job["description"]: job["finished"] - job["started"] for job in convoy.json("job", "list") if job["finished"]}
    return {step: _job_time(jobs, part) for step, part in parts.items()}


def measure(convoy: Convoy, backend: str, name: str, mountpoint: str, data: Path, offsets: list[int], work: Path,
            reference_of: ReferenceOf = the_data_file, copy_back_to: Path | None = None) -> dict:
    """Full backup, incremental backup, restore and the cp reference for one mounted volume.

    `copy_back_to`: a directory on the disk the restore writes to; the copy is then also copied
    back there, cold (`cp_back`): the restore's own direction, from the store's disk to the volumes'."""
    store = work / f"store-{backend}"  # one store per back-end: no block is shared between them
    dest = f"vfs://{store}"
    target = Path(mountpoint) / "data.bin"
    shutil.copyfile(data, target)
    os.sync()
    out: dict = {}

    out["snapshot_full"], snap1, out["backup_full"], url1 = snapshot_and_backup(convoy, name, "s1", dest)
    out["full"] = out["snapshot_full"] + out["backup_full"]

    random_writes(target, offsets)
    out["snapshot_incr"], snap2, out["backup_incr"], url2 = snapshot_and_backup(convoy, name, "s2", dest)
    out["incremental"] = out["snapshot_incr"] + out["backup_incr"]
    out["full_stats"] = convoy.json("backup", "inspect", url1)["stats"]
    incr = convoy.json("backup", "inspect", url2)
    out["incr_stats"] = incr["stats"]
    out["block_size"] = incr["block_size"]
    out["touched_bytes"] = touched_bytes(offsets, incr["block_size"])

    restored = f"{name}r"
    out["restore"] = restore_volume(convoy, url2, restored, backend)

    source = reference_of(convoy, backend, name, target)
    copies = work / f"cp-{backend}"
    copies.mkdir()
    out["cp"], _ = timed(lambda: copy_reference(source, copies))
    out["cp_bytes"] = source.stat().st_size
    if copy_back_to is not None:
        back = copy_back_to / f"cp-back-{backend}"
        back.mkdir()
        out["cp_back"], _ = timed(lambda: copy_reference(copies / source.name, back))
        shutil.rmtree(back)
    shutil.rmtree(copies)

    out["jobs"] = job_seconds(convoy, {
        "backup_full": f"backup of snapshot {snap1} ",
        "backup_incr": f"backup of snapshot {snap2} ",
        "restore": f"into volume {restored}",
    })
    check_restored(convoy, restored, target, backend)
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


def report(runs: list[dict], backends: dict[str, str], heading: str, goal: GoalOf | None = None) -> dict:
    """Print per back-end (named in `backends`, with the line that says what its backup and its cp
    reference are) each step's median, spread and ratio to cp, and given `goal`, whether the step meets
    its goal; returns the same figures."""
    summary: dict = {}
    print(f"\n{heading}")
    print(f"one `convoy info` (the CLI's fixed cost per command, in every step below): "
          f"{statistics.median(r['cli_floor'] for r in runs):.2f} s")
    print("seconds: median [min-max]; x cp = median over runs of (step / that run's cp of the same data)")
    for backend, description in backends.items():
        rows = [r[backend] for r in runs]
        summary[backend] = {}
        print(f"\n== {backend} volume ({description})")
        print(f"{'step':22}{'median':>8}  {'min-max':>13}  {'x cp':>6}" + ("  goal" if goal else ""))
        for step, label in SHOWN:
            stats = summarise([r[step] for r in rows])
            stats["ratio_to_cp"] = statistics.median(r[step] / r["cp"] for r in rows)
            summary[backend][step] = stats
            spread = f"{stats['min']:.2f}-{stats['max']:.2f}"
            print(f"{label:22}{stats['median']:8.2f}  {spread:>13}  {stats['ratio_to_cp']:6.2f}"
                  + (f"  {goal(step, stats)}" if goal else ""))
        if all("cp_back" in r for r in rows):
            back = summarise([r["cp_back"] for r in rows])
            back["restore_ratio"] = statistics.median(r["restore"] / r["cp_back"] for r in rows)
            summary[backend]["cp_back"] = back
            spread = f"{back['min']:.2f}-{back['max']:.2f}"
            print(f"{'cp back + sync (ref.)':22}{back['median']:8.2f}  {spread:>13}  {'':6}"
                  + f"  the restore's direction, onto the volumes' disk: restore = {back['restore_ratio']:.2f} x it")
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
