#!/usr/bin/env python3
"""100 containers started at once on convoy volumes, beside Docker's `local` driver in the same run (issue 12).

For each driver, two scenes, each timed from the user's side (`docker run -d` calls made all at once, one
thread each):

  own      N volumes created first, then N containers started together, each on its own volume
  shared   one volume, then N containers started together on it

A container writes one line into its volume and sleeps; every container must start (a failure is printed
and counted), and every line must be in the volume afterwards. Reported per scene: failures, the wall time
until all N run, the median and p99 of one `docker run -d`, and for convoy the plugin's own Mount time
(p50/p99, from its debug log of each Docker call) beside the run it is part of: the plugin is never the
slowest step when its Mount p99 is well under the run's median. `--runs` repeats everything for a spread.

    .venv/bin/python benchmarks/parallel_containers.py --setup [--containers 100] [--runs 3] [--json FILE]

--setup starts ci/dockerd.sh's private engine (as benchmarks/volume_lifecycle.py does), installs the plugin
built from this checkout with CONVOY_LOG_LEVEL=debug, and stops the engine at the end. Without it the engine
at DOCKER_HOST is used; its plugin must log at debug for the Mount figures. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.volume_lifecycle import IMAGE, setup_engine, sh

MOUNT_LINE = re.compile(r"Docker Mount (\S+): ([0-9.]+) ms")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def docker_run(volume: str, line: str, env) -> tuple[float, str | None]:
    """One `docker run -d`: its seconds, and the error if it failed."""
    started = time.perf_counter()
    result = subprocess.run(
        ["docker", "run", "-d", "--network", "none", "-v", f"{volume}:/data", IMAGE, "sh", "-c",
         f"echo {line} >> /data/lines && exec sleep 3600"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    seconds = time.perf_counter() - started
    return seconds, (result.stderr.strip() or f"exit {result.returncode}") if result.returncode else None


def start_all(volumes: list[str], env) -> tuple[float, list[float], list[str]]:
    """Start one container per entry of `volumes`, all at once: wall seconds, each run's seconds, errors."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(volumes)) as pool:
        results = list(pool.map(lambda i: docker_run(volumes[i], f"c{i}", env), range(len(volumes))))
    wall = time.perf_counter() - started
    return wall, [seconds for seconds, _ in results], [error for _, error in results if error]


def remove_containers(env) -> None:
    ids = sh("docker", "ps", "-aq", "--filter", f"ancestor={IMAGE}", env=env).split()
    for i in range(0, len(ids), 50):
        sh("docker", "rm", "-f", *ids[i:i + 50], env=env)


def lines_in(volume: str, env) -> int:
    out = sh("docker", "run", "--rm", "--network", "none", "-v", f"{volume}:/data", IMAGE, "cat", "/data/lines", env=env)
    return len(out.split())


def mount_times(log: Path, offset: int, volumes: set[str]) -> list[float]:
    """The plugin's Mount times (ms) of `volumes` logged after `offset` in the engine's log."""
    if not log.exists():
        return []
    with open(log, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [float(ms) for name, ms in MOUNT_LINE.findall(text) if name in volumes]


def scene(driver: str, shared: bool, count: int, env, log: Path) -> dict:
    tag = uuid.uuid4().hex[:6]
    volumes = [f"par-{tag}"] * count if shared else [f"par-{tag}-{i}" for i in range(count)]
    for name in sorted(set(volumes)):
        sh("docker", "volume", "create", "-d", driver, name, env=env)
    offset = log.stat().st_size if log.exists() else 0
    wall, runs, errors = start_all(volumes, env)
    written = sum(lines_in(name, env) for name in set(volumes)) if not errors else None
    mounts = mount_times(log, offset, set(volumes)) if driver != "local" else []
    remove_containers(env)
    for name in sorted(set(volumes)):
        sh("docker", "volume", "rm", name, env=env)
    return {
        "failures": len(errors), "first_error": errors[0] if errors else None, "lines_written": written,
        "wall_s": wall, "run_p50_s": statistics.median(runs), "run_p99_s": percentile(runs, 0.99),
        "mount_p50_ms": statistics.median(mounts) if mounts else None,
        "mount_p99_ms": percentile(mounts, 0.99) if mounts else None, "mounts_logged": len(mounts),
    }


def summarise(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def report(runs: list[dict], count: int) -> None:
    print(f"\n{count} containers started at once; median (min-max) over {len(runs)} run(s)")
    print(f"{'scene':8} {'driver':7} {'fail':>4} {'all running s':>22} {'run p50 s':>22} {'run p99 s':>22} "
          f"{'Mount p50 ms':>22} {'Mount p99 ms':>22}")
    for key in runs[0]:
        scene_name, driver = key.split("/")
        rows = [run[key] for run in runs]
        cells = [summarise([row[field] for row in rows]) for field in ("wall_s", "run_p50_s", "run_p99_s")]
        mounts = [summarise([row[field] for row in rows]) if rows[0][field] is not None else "-"
                  for field in ("mount_p50_ms", "mount_p99_ms")]
        failures = sum(row["failures"] for row in rows)
        print(f"{scene_name:8} {driver:7} {failures:4d} " + " ".join(f"{c:>22}" for c in cells + mounts))
    for scene_name in ("own", "shared"):
        convoy, local = (statistics.median(run[f"{scene_name}/{d}"]["run_p50_s"] for run in runs) for d in ("convoy", "local"))
        print(f"  {scene_name}: docker run median, convoy/local = {convoy / local:.2f}")
    for key, row in ((k, r) for run in runs for k, r in run.items()):
        if row["failures"]:
            print(f"  {key}: {row['failures']} failed, first: {row['first_error']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--plugin", default="convoy", help="plugin name as given to -d (default convoy)")
    ap.add_argument("--setup", action="store_true", help="own engine + plugin (debug log), stopped at the end")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.setup:
        setup_engine(env, "CONVOY_LOG_LEVEL=debug")
    log = Path(env.get("CONVOY_CI_ROOT", "/var/lib/convoy-ci")) / "dockerd.log"
    runs = []
    try:
        for _ in range(args.runs):
            run = {}
            for scene_name, shared in (("own", False), ("shared", True)):
                for driver in (args.plugin, "local"):  # alternate, so both see the same machine state
                    key = f"{scene_name}/{'local' if driver == 'local' else 'convoy'}"
                    run[key] = scene(driver, shared, args.containers, env, log)
            runs.append(run)
    finally:
        remove_containers(env)
        if args.setup:
            sh("bash", "ci/dockerd.sh", "stop", env=env)
    report(runs, args.containers)
    if args.json:
        Path(args.json).write_text(json.dumps({"containers": args.containers, "runs": runs}, indent=2) + "\n")
    failed = sum(row["failures"] for run in runs for row in run.values())
    short = [key for run in runs for key, row in run.items()
             if row["lines_written"] is not None and row["lines_written"] != args.containers]
    if short:
        print(f"  lines missing in: {short}")
    return 1 if failed or short else 0


if __name__ == "__main__":
    sys.exit(main())
