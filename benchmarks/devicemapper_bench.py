#!/usr/bin/env python3
"""The device-mapper benchmark (issue 11): boots the guest kernel once and runs benchmarks/inside_devicemapper.py.

The host's kernel has no device-mapper, so the benchmark runs inside the project's test guest
(tests/guest: Debian's kernel under QEMU, software-emulated, -smp 2): a snapshot, a full and an
incremental backup and a restore of a devicemapper volume beside the same on an `image` volume,
each beside a cold `cp` of the same file, median and spread over --runs runs. The CPU is emulated
(TCG), so the seconds are far above a real machine's: compare figures within one table only.
It prints the guest's table, then the summary of the JSON the guest wrote into the results share
(build/guest-bench/devicemapper-bench.json; --json copies it). Needs root (the harness does).

    sudo .venv/bin/python benchmarks/devicemapper_bench.py [--size-mib 1024] [--runs 3] [--timeout S] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.guest.boot import Settings, run_command, tail  # noqa: E402
from tests.guest.image import GuestBuildError, ensure_image  # noqa: E402

RESULTS = REPO / "build" / "guest-bench"  # not build/guest-results: a test run of this checkout keeps its own
JSON_NAME = "devicemapper-bench.json"
TABLE_START = "convoy device-mapper benchmark"
# Sparse on the host: it costs what the guest writes (~8 GiB at 1 GiB volumes: the preallocated XFS, the
# pool's blocks, the file, a store and a cp copy at once).
SCRATCH = "16G"


def guest_command(size_mib: int, runs: int) -> list[str]:
    """What the guest runs, from the repository (its working directory); the JSON goes to the results share."""
    return ["python", "benchmarks/inside_devicemapper.py", "--size-mib", str(size_mib), "--runs", str(runs),
            "--json", f"/results/{JSON_NAME}"]


def default_timeout(size_mib: int, runs: int) -> float:
    """A run of 1 GiB volumes took ~18 min under TCG on 2 shared cores (~1.05 s per MiB): over twice that, and the boot."""
    return 600 + 2.5 * size_mib * runs


def the_table(output: str) -> str | None:
    """The guest's report, from its heading on (the lines before it are progress)."""
    at = output.find(TABLE_START)
    return output[at:].rstrip() if at >= 0 else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024, help="size of each volume (default 1024)")
    ap.add_argument("--runs", type=int, default=3, help="how many times the whole sequence runs (default 3)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds for the whole boot (default: 10 min + 2.5 s per MiB and run: over twice what it takes)")
    ap.add_argument("--console", action="store_true", help="echo the guest's console live (progress lines)")
    ap.add_argument("--json", default=None, help="copy the guest's JSON (every figure) to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: the guest harness builds its image with debootstrap and boots QEMU", file=sys.stderr)
        return 2
    try:
        image = ensure_image()
    except GuestBuildError as error:
        print(f"guest-image: {error}", file=sys.stderr)
        return 3
    timeout = args.timeout or default_timeout(args.size_mib, args.runs)
    settings = Settings.from_env(results=RESULTS, scratch_size=SCRATCH, timeout=timeout)
    settings.console = settings.console or args.console
    run = run_command(image, guest_command(args.size_mib, args.runs), settings)
    output_log = RESULTS / "output.log"
    output = output_log.read_text(errors="replace") if output_log.exists() else ""
    table = the_table(output)
    print(table if table else f"the guest printed no table; the end of {output_log}:\n{tail(output_log, 40)}")
    result = RESULTS / JSON_NAME
    if result.exists():
        print(f"\nsummary from {result}:\n{json.dumps(json.loads(result.read_text())['summary'], indent=1)}")
        if args.json:
            shutil.copyfile(result, args.json)
    return run.status


if __name__ == "__main__":
    raise SystemExit(main())
