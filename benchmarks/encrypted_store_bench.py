"""What encryption costs: the same backup, verify and restore on a plain and an encrypted store.

The engine in this process (the daemon adds the same constant to both), one
file of random data in a directory, to a local vfs:// store, cold cache
before each step; plain and encrypted alternate within each run, so both
see the same machine load. Prints median [min-max] of the runs, the
encrypted figure beside the plain one of the same run, and the ratio.

    .venv/bin/python benchmarks/encrypted_store_bench.py --size-mib 512 --runs 3 --workdir /var/tmp
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.backup import crypto, encryption, engine
from app.backup.backup import SnapshotSource
from benchmarks.benchlib import MIB, drop_caches, write_random_file

KEY = "k" * 44


def timed(step) -> float:
    drop_caches()
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def one_run(work: Path, source: Path, encrypted: bool) -> dict[str, float]:
    store = work / ("enc" if encrypted else "plain")
    out = work / "restored"
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    dest = f"vfs://{store}"
    if encrypted:
        engine.init_store(dest, secret=crypto.Secret.key(KEY.encode(), "bench"))
    figures: dict[str, float] = {}
    result: dict = {}

    def backup() -> None:
        result.update(engine.create_backup(dest, "vol", SnapshotSource("snap", str(source))))

    figures["full backup"] = timed(backup)
    figures["verify"] = timed(lambda: engine.verify_backup(result["url"]))
    figures["restore"] = timed(lambda: engine.restore_backup(result["url"], str(out)))
    assert (out / "data.bin").stat().st_size == (source / "data.bin").stat().st_size
    return figures


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default="/var/tmp")  # noqa: S108 - a scratch disk, as the other benchmarks
    args = parser.parse_args()
    os.environ[encryption.KEY_ENV] = KEY
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="convoy-enc-bench-") as tmp:
        work = Path(tmp)
        source = work / "src"
        source.mkdir()
        write_random_file(source / "data.bin", args.size_mib * MIB)
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for i in range(args.runs):
            for encrypted in (False, True):
                runs[encrypted].append(one_run(work, source, encrypted))
            print(f"run {i + 1}: plain {runs[False][-1]}  encrypted {runs[True][-1]}", flush=True)
    print(f"\n{args.size_mib} MiB of random data, {args.runs} runs, seconds: median [min-max]")
    print(f"{'step':<12} {'encrypted':>22} {'plain (reference)':>22}  ratio (median)")
    for step in runs[False][0]:
        enc = [r[step] for r in runs[True]]
        plain = [r[step] for r in runs[False]]
        ratio = statistics.median(enc) / statistics.median(plain)
        print(f"{step:<12} {spread(enc):>22} {spread(plain):>22}  {ratio:.2f}x")


if __name__ == "__main__":
    main()
