#!/usr/bin/env python3
"""1,000 volumes through Docker's plugin socket, and the daemon's memory under a big backup (issue 12).

Each run starts real daemons (tests/daemon_harness.py) whose root and
vfs.path are on a loop-mounted XFS (benchmarks/benchlib.py) and measures:

  create x8     1,000 VolumeDriver.Create calls over the plugin socket, 8 at a
                time, as Docker sends them: volumes/s (goal >= 100)
  list          VolumeDriver.List with those 1,000 volumes (median of 7; goal <= 0.5 s)
  convoy list   the CLI's `convoy list` round trip, output to a pipe (median of 7; goal <= 0.5 s)
  backup        snapshot + backup of a volume of --backup-gib GiB of data to a
                vfs:// store on the host disk, the 1,000 volumes still there,
                sampling the daemon's VmRSS; then its VmHWM (goal < 150 MiB)

and, in the same run, the references:

  mkdir+fsync   a plain loop making 1,000 directories on the same XFS, each made
                durable (fsync of its parent) before the next: what the disk allows
  create x1     the same 1,000 creates one at a time (another daemon, fresh root)
  daemon's list the control API's GET /v1/volumes that `convoy list` calls: the
                daemon's part of its time, the rest is the CLI's

Random data takes disk: the loop file system and the store each need about
--backup-gib. With --data auto (the default) the script checks free space and
falls back to compressible data (every 1 MiB block different, 1/16 of it
random: the store takes a tenth) when random data does not fit; otherwise
give a smaller --backup-gib or a --workdir on a bigger disk. The file is
written once and moved into each run's vfs.path. Needs root (loop devices, mount).

    .venv/bin/python benchmarks/scale_bench.py [--runs 3] [--volumes 1000] [--backup-gib 10]
                                               [--data auto|random|compressible] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.benchlib import LoopFS, write_random_file
from tests.daemon_harness import Daemon, UnixHTTPConnection

GIB = 1 << 30
MIB = 1 << 20
PARALLEL = 8  # Docker's creates at once in the goal
REPEATS = 7  # list timings: median of this many
DOCKER_HEADERS = {  # what dockerd's plugin client sends
    "Accept": "application/vnd.docker.plugins.v1.2+json",
    "Content-Type": "application/vnd.docker.plugins.v1.2+json",
}
GOALS = {"create_x8_per_s": 100.0, "docker_list_s": 0.5, "convoy_list_s": 0.5, "vm_hwm_mib": 150.0}


class PluginClient:
    """Docker's side of the plugin socket: one kept-alive connection per thread, as Go's HTTP client keeps."""

    def __init__(self, socket_path: Path):
        self.socket_path = socket_path
        self._local = threading.local()

    def call(self, method: str, body: dict) -> dict:
        for attempt in (1, 2):  # a kept-alive connection the server closed: one new one
            connection = getattr(self._local, "connection", None) or UnixHTTPConnection(self.socket_path, timeout=120)
            self._local.connection = connection
            try:
                connection.request("POST", f"/VolumeDriver.{method}", json.dumps(body).encode(), DOCKER_HEADERS)
                response = connection.getresponse()
                data = json.loads(response.read() or b"{}")
            except (OSError, ConnectionError) as err:
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise SystemExit(f"VolumeDriver.{method}: {err}") from None
                continue
            if response.status != 200 or data.get("Err"):
                raise SystemExit(f"VolumeDriver.{method} {body}: {response.status} {data}")
            return data
        raise AssertionError("unreachable")


class RssSampler:
    """The daemon's VmRSS every 50 ms, in a thread: the highest seen, and VmHWM from /proc."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise SystemExit(f"no {field} in /proc/{self.pid}/status")

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak_kib = max(self.peak_kib, self.status_kib("VmRSS"))
            except (OSError, SystemExit):
                return  # the daemon exited

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_compressible_file(path: Path, size: int) -> None:
    """Every 1 MiB block different (nothing deduplicates), 1/16 of it random: compresses ~16x, so the store is small."""
    with open(path, "wb") as f:
        for offset in range(0, size, MIB):
            n = min(MIB, size - offset)
            block = os.urandom(MIB // 16) + bytes(MIB - MIB // 16)
            f.write(block[:n])
        f.flush()
        os.fsync(f.fileno())


WRITERS = {"random": write_random_file, "compressible": write_compressible_file}


def choose_data(wanted: str, free: int, fs_bytes: int, backup_bytes: int) -> str | None:
    """The data to back up that fits the disk: the loop file system, and the store on the same disk."""
    room = free - GIB  # never to the last gigabyte: other work shares this disk
    fits = {"random": fs_bytes + backup_bytes * 1.02 <= room, "compressible": fs_bytes + backup_bytes / 8 <= room}
    for data in (["random", "compressible"] if wanted == "auto" else [wanted]):
        if fits[data]:
            return data
    return None


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(fn: Callable[[], object], n: int = REPEATS) -> float:
    fn()  # warm: the first call pays for imports and caches, as a user's first command of the day does
    return statistics.median(timed(fn) for _ in range(n))


def mkdir_fsync_rate(where: Path, count: int) -> float:
    """Directories per second made durable one at a time: the disk's own limit for a create."""
    where.mkdir()
    fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
    try:
        start = time.perf_counter()
        for i in range(count):
            os.mkdir(f"d{i:05d}", dir_fd=fd)
            os.fsync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    shutil.rmtree(where)
    return count / elapsed


def create_rate(daemon: Daemon, count: int, parallel: int, prefix: str) -> float:
    client = PluginClient(daemon.plugin_socket)
    names = [f"{prefix}{i:05d}" for i in range(count)]
    with ThreadPoolExecutor(parallel) as pool:
        start = time.perf_counter()
        list(pool.map(lambda name: client.call("Create", {"Name": name, "Opts": {}}), names))
        elapsed = time.perf_counter() - start
    return count / elapsed


def convoy_cli(daemon: Daemon, *args: str) -> str:
    """The `convoy` command a user runs (the venv's entry point), its output to a pipe."""
    convoy = Path(sys.executable).parent / "convoy"
    command = [str(convoy)] if convoy.exists() else [sys.executable, "-m", "app"]
    done = subprocess.run([*command, "--socket", str(daemon.socket), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"convoy {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def close_fs(fs: LoopFS) -> None:
    """Unmount and detach; a mount still busy (a killed daemon's last I/O) is detached lazily, never left behind."""
    fs.close()
    if os.path.ismount(fs.mnt):
        time.sleep(2)
        subprocess.run(["umount", "-l", str(fs.mnt)], check=False, capture_output=True)  # the loop device autoclears


def start_daemon(base: Path) -> Daemon:
    daemon = Daemon(base).start()
    daemon.wait_ready()
    return daemon


def one_run(fs: LoopFS, work: Path, data_dir: Path, run: int, volumes: int, backup_bytes: int) -> dict:
    out: dict = {}
    out["mkdir_fsync_per_s"] = mkdir_fsync_rate(fs.mnt / f"mkdir-{run}", volumes)

    serial = start_daemon(fs.mnt / f"serial-{run}")
    try:
        out["create_x1_per_s"] = create_rate(serial, volumes, 1, "one")
    finally:
        serial.stop()
    shutil.rmtree(fs.mnt / f"serial-{run}")

    daemon = Daemon(fs.mnt / f"daemon-{run}")
    big_dir = daemon.root / "vfs" / "big"
    big_dir.parent.mkdir(parents=True)
    data_dir.rename(big_dir)  # the random data, written once: adopted by the create of "big" below
    try:
        daemon.start()
        daemon.wait_ready()
        sampler = RssSampler(daemon.process.pid)
        with sampler:
            out["vm_rss_start_mib"] = sampler.status_kib("VmRSS") / 1024
            out["create_x8_per_s"] = create_rate(daemon, volumes, PARALLEL, "vol")
            out["vm_rss_after_creates_mib"] = sampler.status_kib("VmRSS") / 1024
            client = PluginClient(daemon.plugin_socket)
            listed = len(client.call("List", {})["Volumes"])
            if listed != volumes:
                raise SystemExit(f"List shows {listed} volumes, {volumes} were created")
            out["docker_list_s"] = median_of(lambda: client.call("List", {}))
            out["convoy_list_s"] = median_of(lambda: convoy_cli(daemon, "list"))
            out["control_list_s"] = median_of(lambda: daemon.control("GET", "/volumes"))

            client.call("Create", {"Name": "big", "Opts": {}})
            store = work / f"store-{run}"
            snapshot = convoy_cli(daemon, "snapshot", "create", "big").strip()
            start = time.perf_counter()
            convoy_cli(daemon, "backup", "create", snapshot, "--dest", f"vfs://{store}")
            out["backup_s"] = time.perf_counter() - start
            out["backup_mb_per_s"] = backup_bytes / 1e6 / out["backup_s"]
            out["vm_rss_peak_mib"] = sampler.peak_kib / 1024
            out["vm_hwm_mib"] = sampler.status_kib("VmHWM") / 1024
        shutil.rmtree(store)
        convoy_cli(daemon, "snapshot", "delete", snapshot)
    finally:
        daemon.stop()
        daemon.cleanup_mounts()
        if big_dir.exists():
            big_dir.rename(data_dir)  # for the next run
    shutil.rmtree(fs.mnt / f"daemon-{run}")
    return out


ROWS = [  # key, label, unit, goal; the references are rows of their own, measured in the same run
    ("create_x8_per_s", f"create, {PARALLEL} at a time", "volumes/s", ">= 100"),
    ("create_x1_per_s", "  reference: create, 1 at a time", "volumes/s", ""),
    ("mkdir_fsync_per_s", "  reference: mkdir + fsync, 1 at a time", "dirs/s", ""),
    ("docker_list_s", "Docker's List (median of 7)", "s", "<= 0.5"),
    ("convoy_list_s", "`convoy list` (median of 7)", "s", "<= 0.5"),
    ("control_list_s", "  the daemon's part: GET /v1/volumes", "s", ""),
    ("backup_s", "backup (snapshot already taken)", "s", ""),
    ("backup_mb_per_s", "backup throughput", "MB/s", ""),
    ("vm_rss_start_mib", "daemon VmRSS at start", "MiB", ""),
    ("vm_rss_after_creates_mib", "daemon VmRSS after the creates", "MiB", ""),
    ("vm_rss_peak_mib", "daemon VmRSS, highest sampled", "MiB", ""),
    ("vm_hwm_mib", "daemon VmHWM after the backup", "MiB", "< 150"),
]


def report(runs: list[dict], volumes: int, backup_gib: float, data: str) -> dict:
    print(f"\nconvoy scale benchmark: {volumes} volumes, backup of {backup_gib:g} GiB of {data} data, "
          f"{len(runs)} run(s), {os.cpu_count()} CPUs, vfs.path on loop XFS")
    print(f"{'':42} {'median':>9} {'min':>9} {'max':>9}  unit       goal")
    summary = {}
    for key, label, unit, goal in ROWS:
        values = [run[key] for run in runs]
        med = statistics.median(values)
        summary[key] = {"median": med, "min": min(values), "max": max(values), "all": values}
        print(f"{label:42} {med:9.2f} {min(values):9.2f} {max(values):9.2f}  {unit:10} {goal}")
    speedup = [run["create_x8_per_s"] / run["mkdir_fsync_per_s"] for run in runs]
    print(f"\ncreates 8 at a time per mkdir+fsync of the same run: {statistics.median(speedup):.2f}x "
          f"(spread {min(speedup):.2f}-{max(speedup):.2f})")
    met = {
        "create_x8_per_s": summary["create_x8_per_s"]["median"] >= GOALS["create_x8_per_s"],
        "docker_list_s": summary["docker_list_s"]["median"] <= GOALS["docker_list_s"],
        "convoy_list_s": summary["convoy_list_s"]["median"] <= GOALS["convoy_list_s"],
        "vm_hwm_mib": max(summary["vm_hwm_mib"]["all"]) < GOALS["vm_hwm_mib"],
    }
    print("goals: " + ", ".join(f"{key} {'met' if ok else 'MISSED'}" for key, ok in met.items()))
    return {"runs": runs, "summary": summary, "goals_met": met, "data": data}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--volumes", type=int, default=1000)
    ap.add_argument("--backup-gib", type=float, default=10.0, help="GiB of data in the backed-up volume")
    ap.add_argument("--data", choices=["auto", "random", "compressible"], default="auto",
                    help="what the backed-up volume holds (auto: random when the disk has room for it)")
    ap.add_argument("--workdir", default=None, help="where the loop image and the stores go (host disk)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: loop devices and mount need it", file=sys.stderr)
        return 2
    backup_bytes = int(args.backup_gib * GIB)
    work = Path(tempfile.mkdtemp(prefix="convoy-scale-", dir=args.workdir))
    fs_bytes = backup_bytes + 3 * GIB  # the data, 2x1,000 volumes, catalogs, and XFS's own
    data = choose_data(args.data, shutil.disk_usage(work).free, fs_bytes, backup_bytes)
    if data is None:
        shutil.rmtree(work)
        print(f"{work.parent} has {shutil.disk_usage(work.parent).free / GIB:.1f} GiB free, too little for "
              f"--backup-gib {args.backup_gib:g} (--data {args.data}): give a smaller --backup-gib or a --workdir "
              "on a bigger disk", file=sys.stderr)
        return 2
    fs = LoopFS(work, "xfs", fs_bytes)
    try:
        data_dir = fs.mnt / "big-data"
        data_dir.mkdir()
        print(f"writing {args.backup_gib:g} GiB of {data} data ...", flush=True)
        WRITERS[data](data_dir / "data.bin", backup_bytes)
        runs = []
        for run in range(args.runs):
            result = one_run(fs, work, data_dir, run, args.volumes, backup_bytes)
            print(f"run {run + 1}: " + ", ".join(f"{key} {value:.2f}" for key, value in result.items()), flush=True)
            runs.append(result)
    finally:
        close_fs(fs)
        shutil.rmtree(work, ignore_errors=True)
    results = report(runs, args.volumes, args.backup_gib, data)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
