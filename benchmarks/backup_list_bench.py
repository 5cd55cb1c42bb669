#!/usr/bin/env python3
"""`backup list` of a store holding 10,000 backups of 100 volumes (issue 12), on vfs:// and on S3.

The store is fabricated through the project's own code: per volume one real
backup (`create_backup` of a one-file tree), then copies of its manifest
under new names and times written with `manifest.write_backup` (what a
backup commits through), 12 at a time. They are written without indexes, as
a Convoy older than the index left its stores. The S3 store is a prefix in
a bucket of the moto server the tests use (tests/moto_server.py), on loopback.

Per run and per store, in this order:

  reference  the listing before the index: every manifest read, one after
             another (tests/backup/manifest_listing.py, the old code)
  rebuild    `list_backups` with no index, as the first list after an
             upgrade: every manifest read (in parallel), the indexes written
  service    `list_backups` with the indexes current: the daemon's handler
             (each index believed on its volume.json's generation, no listing)
  checked    the same when the indexes are due their hourly check against a
             listing of every manifest name (index.REVALIDATE_AFTER passed)
  cli        `convoy backup list DEST` through a running daemon's control
             socket, the table to a pipe: what a user waits for
  cli-json   the same with --json
  cli-empty  `convoy backup list` of an empty vfs:// store: the CLI's and
             the daemon's own cost, which the two above include

Each listing must equal the reference's rows, or the benchmark fails.
The in-process steps also report their CPU seconds ("cpu"), which say
what a step costs when the machine is shared with other work. The
vfs store is on the host disk (--workdir) with a warm page cache (it was
just written); `--cold` drops the cache before each vfs step as well.
Prints per step the median and min-max spread over --runs, beside the
reference of the same runs. Needs root (the daemon).

    .venv/bin/python benchmarks/backup_list_bench.py [--volumes 100] [--per-volume 100] [--runs 3] [--stores vfs,s3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.backup import SnapshotSource, create_backup, index, layout, list_backups, manifest, new_backup_name  # noqa: E402
from app.backup.objectstore import ObjectStore, open_store  # noqa: E402
from benchmarks.benchlib import drop_caches  # noqa: E402
from tests.backup.manifest_listing import list_from_manifests  # noqa: E402
from tests.daemon_harness import Daemon  # noqa: E402
from tests.moto_server import moto_server  # noqa: E402

STEPS = ("reference", "rebuild", "service", "checked", "cli", "cli-json", "cli-empty")
TARGETS = {"vfs": 1.0, "s3": 3.0}  # issue 12: seconds for `backup list`, indexed
DEFAULT_REVALIDATE_AFTER = index.REVALIDATE_AFTER


def fabricate(dest: str, endpoint: str | None, volumes: int, per_volume: int, work: Path) -> None:
    """`volumes` volumes of `per_volume` backups each: one real backup, then copies of its manifest."""
    tree = work / "tree"
    tree.mkdir(exist_ok=True)
    with open_store(dest, s3_endpoint=endpoint) as store, ThreadPoolExecutor(12) as pool:
        for v in range(volumes):
            volume = f"vol{v:03d}"
            (tree / "data.txt").write_text(f"the data of {volume}\n")
            first = create_backup(dest, volume, SnapshotSource("snap-0", str(tree)), s3_endpoint=endpoint)
            doc = dict(manifest.read_backup(store, volume, first["name"]))
            copies = []
            for i in range(1, per_volume):
                created = f"2026-01-{1 + i // 24 % 28:02d}T{i % 24:02d}:00:00.000Z"
                copies.append({**doc, "name": new_backup_name(), "snapshot": f"snap-{i}", "created_at": created})
            list(pool.map(lambda copy: manifest.write_backup(store, copy), copies))
        remove_indexes(store, volumes)


def remove_indexes(store: ObjectStore, volumes: int) -> None:
    for v in range(volumes):
        store.delete(layout.index_key(f"vol{v:03d}"))


def timed(call: Callable[[], object], cold: bool, cpu: dict[str, float] | None = None, step: str = "") -> tuple[float, object]:
    """Wall seconds of `call()` and its result; its CPU seconds in this process go to `cpu[step]`
    (the machine may be shared: CPU time says what the step costs whatever the load)."""
    if cold:
        drop_caches()
    started, cpu_started = time.monotonic(), time.process_time()
    result = call()
    if cpu is not None:
        cpu[step] = time.process_time() - cpu_started
    return time.monotonic() - started, result


def one_run(kind: str, dest: str, endpoint: str | None, daemon: Daemon, volumes: int, cold: bool) -> dict[str, float]:
    cold = cold and kind == "vfs"
    took: dict[str, float] = {}
    cpu: dict[str, float] = {}
    took["reference"], reference = timed(lambda: list_from_manifests(dest, endpoint), cold, cpu, "reference")
    with open_store(dest, s3_endpoint=endpoint, create=False) as store:
        remove_indexes(store, volumes)
    for step in ("rebuild", "service", "checked"):
        index.REVALIDATE_AFTER = 0.0 if step == "checked" else DEFAULT_REVALIDATE_AFTER
        took[step], rows = timed(lambda: list_backups(dest, s3_endpoint=endpoint), cold, cpu, step)
        if rows != reference:
            raise SystemExit(f"{kind} {step}: the listing differs from the manifests'")
    index.REVALIDATE_AFTER = DEFAULT_REVALIDATE_AFTER
    backups = len(reference)
    endpoint_args = ["--s3-endpoint", endpoint] if endpoint else []
    for step, extra in (("cli", []), ("cli-json", ["--json"])):
        took[step], result = timed(lambda extra=extra: daemon.cli("backup", "list", dest, *endpoint_args, *extra), cold)
        if result.returncode != 0:  # type: ignore[attr-defined]
            raise SystemExit(f"{kind} {step}: convoy backup list failed: {result.stderr}")  # type: ignore[attr-defined]
        shown = result.stdout.count("?backup=")  # type: ignore[attr-defined]
        if shown != backups:
            raise SystemExit(f"{kind} {step}: convoy backup list showed {shown} backups of {backups}")
    empty = daemon.base / "empty-store"
    empty.mkdir(exist_ok=True)
    took["cli-empty"], result = timed(lambda: daemon.cli("backup", "list", f"vfs://{empty}"), cold)
    if result.returncode != 0:  # type: ignore[attr-defined]
        raise SystemExit(f"convoy backup list of an empty store failed: {result.stderr}")  # type: ignore[attr-defined]
    return {**took, **{f"{step} cpu": seconds for step, seconds in cpu.items()}}


def report(kind: str, samples: list[dict[str, float]], backups: int) -> None:
    print(f"\n{kind}: {backups} backups, {len(samples)} runs (target for an indexed list: <= {TARGETS[kind]:.0f} s)")
    print(f"  {'step':<13} {'median s':>9} {'spread s':>15} {'reference s':>12} {'ratio':>7}")
    for step in (*STEPS, *(f"{step} cpu" for step in STEPS[:4])):
        values = [s[step] for s in samples]
        med = statistics.median(values)
        against = "reference cpu" if step.endswith(" cpu") else "reference"
        ratio = statistics.median(s[step] / s[against] for s in samples)
        print(
            f"  {step:<13} {med:9.3f} {min(values):7.3f}-{max(values):<7.3f} "
            f"{statistics.median(s[against] for s in samples):12.3f} {ratio:7.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, default=100)
    parser.add_argument("--per-volume", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="where the vfs store and the daemon live (host disk)")
    parser.add_argument("--stores", default="vfs,s3", help="which stores: vfs, s3 or both (comma list)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each vfs step")
    parser.add_argument("--json", help="write the samples here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: the daemon mounts volumes")
    # the moto server's dummy credentials, also the daemon's (it inherits this environment)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")  # noqa: S106

    work = Path(tempfile.mkdtemp(prefix="convoy-list-bench-", dir=args.workdir))
    daemon = Daemon(work / "daemon")
    samples: dict[str, list[dict[str, float]]] = {}
    try:
        daemon.start()
        daemon.wait_ready()
        with moto_server(work) as endpoint:
            stores = []
            if "vfs" in args.stores.split(","):
                stores.append(("vfs", f"vfs://{work}/store", None))
            if "s3" in args.stores.split(","):
                import boto3

                boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="list-bench")
                stores.append(("s3", "s3://list-bench@us-east-1/store", endpoint))
            for kind, dest, store_endpoint in stores:
                started = time.monotonic()
                fabricate(dest, store_endpoint, args.volumes, args.per_volume, work)
                made = args.volumes * args.per_volume
                print(f"{kind}: fabricated {made} backups in {time.monotonic() - started:.1f} s", flush=True)
                for run in range(args.runs):
                    took = one_run(kind, dest, store_endpoint, daemon, args.volumes, args.cold)
                    samples.setdefault(kind, []).append(took)
                    print(f"  run {run + 1}: " + "  ".join(f"{k} {v:.3f}" for k, v in took.items()), flush=True)
    finally:
        daemon.stop()
        daemon.cleanup_mounts()
        shutil.rmtree(work, ignore_errors=True)
    for kind, runs in samples.items():
        report(kind, runs, args.volumes * args.per_volume)
    if args.json:
        Path(args.json).write_text(json.dumps(samples, indent=1))


if __name__ == "__main__":
    main()
