#!/usr/bin/env python3
"""How long a `convoy` command that does no I/O of its own takes, and how long the daemon takes to start (issue 12).

A real daemon (`--drivers vfs`, its VFS store on a loop-mounted XFS with
reflink=1, so `snapshot create` is a reflink) serves the CLI as a
user runs it (`python -m app`, the code of this checkout, as the tests run
it; the `convoy` entry point imports the same), output to a pipe (as a
script reads it), page cache and byte code (.pyc) warm. Each
command runs once to warm up, then --repeat times; it prints the median, the
min-max spread and the median CPU time (user+sys: what the command itself
costs when the machine is busy), beside references from the same run:

  python -c pass          the interpreter alone (the floor of any Python CLI)
  python -c "import json"
  curl --unix-socket      the same request over the control socket without
                          the CLI (the daemon's own time plus curl's start)

Then the daemon is stopped and started --starts times: seconds from the
process start to both sockets answering (Docker's Capabilities and the
control API's info), median and spread. After that --volumes volumes are
created through Docker's plugin socket, 8 at a time, and `convoy list` and
the start are measured again with them in the catalog, and a Prometheus
scrape of /metrics (which counts the volumes from the catalog) with and
without them, beside curl of the same list request.

    .venv/bin/python benchmarks/cli_latency.py [--repeat 7] [--starts 5] [--volumes 1000] [--workdir DIR]

Needs root (loop device, mount). Everything it made is removed at the end,
also when a step fails.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.benchlib import MIB, LoopFS  # noqa: E402
from tests.daemon_harness import CONVOY, Daemon  # noqa: E402

PYTHON = sys.executable
XFS_BYTES = 1024 * MIB
CREATORS = 8  # Docker's parallel creates (a compose file or a Swarm node)


class BenchError(SystemExit):
    """A step failed: stop loudly (after cleaning up)."""


def run_once(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one command whose output goes to a pipe."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def measure(cmd: list[str], repeat: int) -> dict:
    run_once(cmd)  # warm: the modules in the page cache, the daemon's first request done
    walls, cpus = zip(*(run_once(cmd) for _ in range(repeat)), strict=True)
    return {"median": statistics.median(walls), "min": min(walls), "max": max(walls), "cpu": statistics.median(cpus)}


def curl(socket: Path, method: str, path: str, body: str | None = None) -> list[str] | None:
    """The same request as the CLI makes, without the CLI; None without curl."""
    if not shutil.which("curl"):
        return None
    cmd = ["curl", "-sf", "--unix-socket", str(socket), "-X", method, f"http://convoy/v1{path}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "-d", body]
    return cmd


def scrape(socket: Path) -> list[str] | None:
    """A Prometheus scrape of the control socket's /metrics; None without curl."""
    return ["curl", "-sf", "--unix-socket", str(socket), "http://convoy/metrics"] if shutil.which("curl") else None


def cpu_seconds(pid: int) -> float:
    """User+sys CPU a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_seconds(daemon: Daemon, starts: int) -> dict:
    """Process start to both sockets answering, `starts` times (the daemon is running when it returns),
    with the daemon's CPU time by then."""
    seconds, cpus = [], []
    for _ in range(starts):
        daemon.stop()
        started = time.perf_counter()
        daemon.start(wait=False)
        daemon.wait_listening(timeout=30)
        seconds.append(time.perf_counter() - started)
        cpus.append(cpu_seconds(daemon.process.pid))
        daemon.wait_ready()  # its start-up work done before the next stop: a stop does not interrupt it
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "cpu": statistics.median(cpus)}


def create_volumes(daemon: Daemon, count: int) -> float:
    """`count` volumes through Docker's socket, CREATORS at a time; their seconds."""

    def create(i: int) -> None:
        status, answer = daemon.docker("Create", {"Name": f"many{i:05d}", "Opts": {}})
        if status != 200 or answer.get("Err"):
            raise BenchError(f"create many{i:05d}: {status} {answer}")

    started = time.perf_counter()
    with ThreadPoolExecutor(CREATORS) as pool:
        list(pool.map(create, range(count)))
    return time.perf_counter() - started


def line(label: str, figures: dict | None, reference: str = "") -> str:
    if figures is None:
        return f"{label:34}{'-':>8}"
    spread = f"{figures['min']:.3f}-{figures['max']:.3f}"
    cpu = f"{figures['cpu']:.3f}" if "cpu" in figures else ""
    return f"{label:34}{figures['median']:8.3f}  {spread:>13}  {cpu:>6}  {reference}"


def bench(work: Path, repeat: int, starts: int, volumes: int) -> None:
    xfs = daemon = None
    try:
        xfs = LoopFS(work, "xfs", XFS_BYTES)
        # the volumes on the XFS, the daemon's root and log on the host disk (as image_bench.py): nothing of
        # this process keeps the XFS busy when it is unmounted at the end
        daemon = Daemon(work / "daemon", "--drivers", "vfs", "--driver-opts", f"vfs.path={xfs.mnt}/vfs").start()
        daemon.wait_ready()
        sock = daemon.socket
        cli = [*CONVOY, "--socket", str(sock)]
        run_once([*cli, "create", "v1"])
        Path(xfs.mnt, "vfs", "v1", "data").write_bytes(os.urandom(MIB))

        refs = {
            "interpreter": measure([PYTHON, "-c", "pass"], repeat),
            "json": measure([PYTHON, "-c", "import json"], repeat),
        }
        commands = [  # (label, CLI arguments, the same request for curl)
            ("convoy list", ["list"], curl(sock, "GET", "/volumes")),
            ("convoy inspect v1", ["inspect", "v1"], curl(sock, "GET", "/volumes/v1")),
            ("convoy info", ["info"], curl(sock, "GET", "/info")),
            ("convoy snapshot create v1", ["snapshot", "create", "v1"], curl(sock, "POST", "/snapshots", '{"volume": "v1"}')),
        ]
        rows = [(label, measure([*cli, *args], repeat), measure(raw, repeat) if raw else None) for label, args, raw in commands]
        scrape_cmd = scrape(sock)
        few_scrape = measure(scrape_cmd, repeat) if scrape_cmd else None
        started_empty = start_seconds(daemon, starts)

        create_seconds = create_volumes(daemon, volumes) if volumes else 0.0
        many_list = measure([*cli, "list"], repeat)
        many_curl_cmd = curl(sock, "GET", "/volumes")
        many_curl = measure(many_curl_cmd, repeat) if many_curl_cmd else None
        many_scrape = measure(scrape_cmd, repeat) if scrape_cmd else None
        started_many = start_seconds(daemon, starts)
        errors = [entry for entry in daemon.log_text().splitlines() if "ERROR" in entry or "Traceback" in entry]
    except BaseException:
        if daemon is not None:
            print("daemon log (last lines):\n" + "\n".join(daemon.log_text().splitlines()[-20:]), file=sys.stderr)
        raise
    finally:
        if daemon is not None:
            daemon.stop()
        if xfs is not None:
            xfs.close()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nconvoy CLI latency: {' '.join(CONVOY)} in {REPO}, a vfs daemon on a loop-mounted XFS, warm, output to a pipe, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"seconds: median of {repeat} [min-max], CPU = median user+sys of the process; "
          "curl = the same request without the CLI")
    print(f"{'':34}{'median':>8}  {'min-max':>13}  {'CPU':>6}")
    print(line("python -c pass (ref.)", refs["interpreter"]))
    print(line('python -c "import json" (ref.)', refs["json"]))
    for label, figures, raw in rows:
        print(line(label, figures))
        print(line("  curl, same request (ref.)", raw))
    print(line("curl /metrics (a scrape)", few_scrape, "curl of list above: the reference"))
    print(line("daemon start to both sockets", started_empty, f"(median of {starts})"))
    print(f"\nwith {volumes} more volumes (created through the plugin socket, {CREATORS} at a time, "
          f"in {create_seconds:.1f} s: {volumes / create_seconds if create_seconds else 0:.0f}/s)")
    print(line("convoy list", many_list))
    print(line("  curl, same request (ref.)", many_curl))
    print(line("curl /metrics (a scrape)", many_scrape, "curl of list above: the reference"))
    print(line("daemon start to both sockets", started_many, f"(median of {starts})"))
    if errors:
        print("\ndaemon log errors:\n  " + "\n  ".join(errors[:20]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="timed runs of each command (default 7)")
    ap.add_argument("--starts", type=int, default=5, help="timed daemon starts (default 5)")
    ap.add_argument("--volumes", type=int, default=1000, help="volumes for the second part (default 1000)")
    ap.add_argument("--workdir", default=None, help="where the XFS image goes (default: $TMPDIR)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: the loop device and mount need it", file=sys.stderr)
        return 2
    # warm includes the byte code: a user's installed convoy has its .pyc files, so the CLI and the
    # daemon write theirs at the first run here even when this shell says not to
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    bench(Path(tempfile.mkdtemp(prefix="convoy-cli-bench-", dir=args.workdir)), args.repeat, args.starts, args.volumes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
