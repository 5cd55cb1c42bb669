#!/usr/bin/env python3
"""A volume's life through the Docker engine: Convoy plugin vs Docker's `local` driver.

One iteration, timed from the user's side with the `docker` CLI:

  create   docker volume create -d DRIVER NAME
  run      docker run --rm -v NAME:/data busybox  (writes WRITE_MIB MiB and syncs)
  remove   docker volume rm NAME

The two drivers alternate iteration by iteration in the same run, so both see
the same machine state. Prints the median of each phase and of the whole life
per driver, and the ratio convoy/local (goal: at most 1.2).

    .venv/bin/python benchmarks/volume_lifecycle.py [--iterations 20] [--write-mib 8] [--json FILE]
    .venv/bin/python benchmarks/volume_lifecycle.py --setup   # own engine + plugin, stopped at the end

Without --setup it uses the engine at DOCKER_HOST, which must have the plugin
(`make install`) and the test image (ci/make-busybox-image.sh). With --setup it
starts the private engine of ci/dockerd.sh (under CONVOY_CI_ROOT, default
/var/lib/convoy-ci), installs the plugin there with `make install` and stops
the engine afterwards (it replaces a plugin named convoy installed there). Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = "convoy-test-busybox:latest"
PHASES = ("create", "run", "remove")


def sh(*argv, env=None, timeout=600):
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


def one_life(driver: str, write_mib: int, env) -> dict[str, float]:
    name = f"bench-{driver.split(':')[0]}-{uuid.uuid4().hex[:8]}"
    times = {}
    t0 = time.perf_counter()
    sh("docker", "volume", "create", "-d", driver, name, env=env)
    t1 = time.perf_counter()
    sh("docker", "run", "--rm", "--network", "none", "-v", f"{name}:/data", IMAGE, "sh", "-c",
       f"dd if=/dev/zero of=/data/blob bs=1M count={write_mib} 2>/dev/null && sync", env=env)
    t2 = time.perf_counter()
    sh("docker", "volume", "rm", name, env=env)
    t3 = time.perf_counter()
    times.update(create=t1 - t0, run=t2 - t1, remove=t3 - t2, total=t3 - t0)
    return times


def setup_engine(env, *plugin_settings: str):
    """ci/dockerd.sh's private engine with the busybox image and the plugin built from this checkout, set with
    `plugin_settings` (KEY=VALUE)."""
    root = Path(env.get("CONVOY_CI_ROOT", "/var/lib/convoy-ci"))
    env["CONVOY_CI_ROOT"] = str(root)
    env["DOCKER_HOST"] = f"unix://{root}/docker.sock"
    sh("bash", "ci/install-deps.sh", env=env, timeout=900)
    sh("bash", "ci/dockerd.sh", "start", env=env)
    sh("bash", "ci/make-busybox-image.sh", env=env)
    state, control = root / "bench-state", root / "bench-control"
    # Always the plugin built from this checkout: replace whatever was installed.
    subprocess.run(["docker", "plugin", "rm", "-f", "convoy"], env=env, capture_output=True)
    settings = [f"PLUGIN_SETTINGS={' '.join(plugin_settings)}"] if plugin_settings else []
    sh("make", "--no-print-directory", "install", f"PLUGIN_STATE={state}", f"PLUGIN_CONTROL={control}", *settings,
       env=env, timeout=1200)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--write-mib", type=int, default=8)
    ap.add_argument("--plugin", default="convoy", help="plugin name as given to -d (default convoy)")
    ap.add_argument(
        "--setup", action="store_true", help="start ci/dockerd.sh's engine and install the plugin; stop it at the end"
    )
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    env = dict(os.environ)
    if args.setup:
        setup_engine(env)
    try:
        drivers = {"convoy": args.plugin, "local": "local"}
        for d in drivers.values():  # warm up: first container start, plugin code paths, page cache
            one_life(d, args.write_mib, env)
        samples = {k: [] for k in drivers}
        for _ in range(args.iterations):
            for key, d in drivers.items():
                samples[key].append(one_life(d, args.write_mib, env))
    finally:
        if args.setup:
            sh("bash", "ci/dockerd.sh", "stop", env=env)

    result = {"iterations": args.iterations, "write_mib": args.write_mib, "median_s": {}}
    print(f"volume life through the engine: {args.iterations} iterations per driver, {args.write_mib} MiB written")
    print(f"{'driver':8} " + " ".join(f"{p:>9}" for p in (*PHASES, 'total')) + "   (median seconds)")
    for key in drivers:
        med = {p: statistics.median(s[p] for s in samples[key]) for p in (*PHASES, "total")}
        result["median_s"][key] = med
        print(f"{key:8} " + " ".join(f"{med[p]:9.3f}" for p in (*PHASES, "total")))
    ratio = result["median_s"]["convoy"]["total"] / result["median_s"]["local"]["total"]
    result["ratio_total"] = ratio
    for p in PHASES:
        print(f"  {p:7} convoy - local = {1000 * (result['median_s']['convoy'][p] - result['median_s']['local'][p]):+7.1f} ms")
    print(f"ratio convoy/local (whole life): {ratio:.2f}  (goal <= 1.20: {'met' if ratio <= 1.2 else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
