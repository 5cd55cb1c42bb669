"""The daemon's Prometheus metrics, served at /metrics (control socket, and --metrics-addr over TCP).

Counters and histograms are kept as things happen: operations (Docker's calls
and the control API's) by kind and result, finished jobs, bytes backed up,
uploaded and restored. What the daemon's state already holds (volumes and
mounts by back-end, running jobs) is read from the catalog and the job runner
at each scrape, so no second copy can drift from it.

Only the daemon imports this module (prometheus_client takes ~70 ms to import:
the CLI never pays for it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from app.backup.progress import Progress
from app.catalog import Catalog
from app.errors import ConvoyError
from app.json_types import JSONObject

__all__ = [  # what the daemon calls
    "CONTENT_TYPE_LATEST",
    "error_kind",
    "exposition",
    "metered_job",
    "operation",
    "schedule_removed",
    "schedule_succeeded",
    "watch",
]

# a *_created series beside each counter doubles the scrape and tells an operator nothing
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # memory, CPU and open files of the daemon

# Docker's calls take milliseconds; a restore through Docker may take up to its 2-minute limit
OPERATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
JOB_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600)

OPERATIONS = Counter(
    "convoy_operations",
    "Requests answered, by interface (docker: the plugin socket, control: the CLI's API), operation and "
    "result (ok, or the error kind: invalid, not_found, conflict, unavailable, damaged, cancelled, error)",
    ["interface", "operation", "result"],
    registry=REGISTRY,
)
OPERATION_SECONDS = Histogram(
    "convoy_operation_duration_seconds",
    "Time to answer a request, by interface and operation (failed ones too)",
    ["interface", "operation"],
    buckets=OPERATION_BUCKETS,
    registry=REGISTRY,
)
JOBS = Counter(
    "convoy_jobs", "Jobs finished (backup, restore, verify, delete), by kind and result (done, or the error kind)",
    ["kind", "result"], registry=REGISTRY,
)  # fmt: skip
JOB_SECONDS = Histogram(
    "convoy_job_duration_seconds", "Time a job ran, by kind", ["kind"], buckets=JOB_BUCKETS, registry=REGISTRY
)
BACKUP_BYTES = Counter(
    "convoy_backup_bytes", "Bytes of snapshot data read by finished backups (an incremental backup reads what changed)",
    registry=REGISTRY,
)  # fmt: skip
UPLOADED_BYTES = Counter(
    "convoy_backup_uploaded_bytes",
    "Bytes finished backups wrote to their stores: new blocks only (after dedup), compressed",
    registry=REGISTRY,
)
RESTORED_BYTES = Counter("convoy_restore_bytes", "Bytes written by finished restores", registry=REGISTRY)
SCHEDULE_SUCCESS = Gauge(
    "convoy_schedule_last_success_timestamp_seconds",
    "When each schedule's last run succeeded (Unix time)",
    ["schedule"],
    registry=REGISTRY,
)


def error_kind(error: BaseException) -> str:
    return error.kind if isinstance(error, ConvoyError) else "error"


@contextmanager
def operation(interface: str, name: str) -> Iterator[None]:
    """Count and time one request; an exception leaving it is its result's kind (and goes on)."""
    started = time.perf_counter()
    result = "ok"
    try:
        yield
    except BaseException as error:
        result = error_kind(error)
        raise
    finally:
        OPERATIONS.labels(interface, name, result).inc()
        OPERATION_SECONDS.labels(interface, name).observe(time.perf_counter() - started)


Work = Callable[[Progress], JSONObject]


def metered_job(kind: str, work: Work) -> Work:
    """`work` of a job of `kind`, counted, timed and its bytes added when it returns: before the job
    shows as done, so a scrape after `convoy backup create` returned sees its bytes."""

    def metered(progress: Progress) -> JSONObject:
        started = time.monotonic()
        try:
            result = work(progress)
        except BaseException as error:
            JOBS.labels(kind, error_kind(error)).inc()
            raise
        finally:
            JOB_SECONDS.labels(kind).observe(time.monotonic() - started)
        JOBS.labels(kind, "done").inc()
        _count_bytes(kind, result, progress)
        return result

    return metered


def _count_bytes(kind: str, result: JSONObject, progress: Progress) -> None:
    if kind == "backup":
        stats = result.get("stats")
        if isinstance(stats, dict):  # a back-end's own snapshot kept as the backup (ebs://) has none
            BACKUP_BYTES.inc(_count(stats.get("read_bytes")))
            UPLOADED_BYTES.inc(_count(stats.get("stored_bytes")))
    elif kind == "restore":
        RESTORED_BYTES.inc(progress.done_bytes)


def _count(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def schedule_succeeded(name: str, when: float) -> None:
    """A run of schedule `name` succeeded at `when` (Unix time): the schedule runner calls this."""
    SCHEDULE_SUCCESS.labels(name).set(when)


def schedule_removed(name: str) -> None:
    """Schedule `name` was deleted: its series goes, rather than ageing forever."""
    with suppress(KeyError):  # it never succeeded
        SCHEDULE_SUCCESS.remove(name)


class StateCollector(Collector):
    """Volumes and mounts by back-end, and running jobs, read at scrape time."""

    def __init__(self) -> None:
        self.catalog: Catalog | None = None
        self.drivers: tuple[str, ...] = ()
        self.running_jobs: Callable[[], Iterable[str]] = lambda: ()

    def collect(self) -> Iterator[Metric]:
        volumes = GaugeMetricFamily("convoy_volumes", "Volumes in the catalog, by back-end", labels=["driver"])
        mounted = GaugeMetricFamily(
            "convoy_volumes_mounted", "Volumes mounted on this host (one reference or more), by back-end", labels=["driver"]
        )
        refs = GaugeMetricFamily(
            "convoy_mount_references", "Mount references held (containers, convoy mount, restores), by back-end",
            labels=["driver"],
        )  # fmt: skip
        counts = {driver: (0, 0, 0) for driver in self.drivers}  # enabled back-ends show 0, not nothing
        if self.catalog is not None:
            counts.update({driver: (n, m, r) for driver, n, m, r in self.catalog.volume_counts()})
        for driver, (n, m, r) in sorted(counts.items()):
            volumes.add_metric([driver], n)
            mounted.add_metric([driver], m)
            refs.add_metric([driver], r)
        yield from (volumes, mounted, refs)
        running = GaugeMetricFamily("convoy_jobs_running", "Jobs running now, by kind", labels=["kind"])
        by_kind = dict.fromkeys(("backup", "restore", "verify", "delete"), 0)
        for kind in self.running_jobs():
            by_kind[kind] = by_kind.get(kind, 0) + 1
        for kind, n in by_kind.items():
            running.add_metric([kind], n)
        yield running


STATE = StateCollector()
REGISTRY.register(STATE)


def watch(catalog: Catalog, drivers: Iterable[str], running_jobs: Callable[[], Iterable[str]]) -> None:
    """Where the scrape-time metrics read from: the daemon's catalog, back-ends and job runner."""
    STATE.catalog = catalog
    STATE.drivers = tuple(drivers)
    STATE.running_jobs = running_jobs


def exposition() -> bytes:
    """Every metric in Prometheus's text format (reads the catalog: call it off the event loop)."""
    return generate_latest(REGISTRY)
