"""Long operations (backup, restore, verify, delete) run as jobs on the daemon.

A job runs in its own thread and reports progress; the CLI polls it and
draws a progress bar. Leaving the CLI (Ctrl-C) leaves the job running: the
operations are crash-safe on their own, so neither a dropped client nor a
cancel corrupts anything.

Each job is also written to the catalog when it starts and when it ends
(not at every progress tick: a disk flush each), so `convoy job inspect`
and `job list` still show it after a restart. A job the catalog still holds
as running at the next start was cut short by a crash or a restart: it is
marked `interrupted` then, with the time. Its work was crash-safe (nothing
half-committed); running the command again finishes it, and a backup run
again reuses every block the interrupted one stored.
"""

from __future__ import annotations

import builtins
import contextvars
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

from app import logs
from app.backup.progress import Progress
from app.catalog import Catalog
from app.errors import ConvoyError, NotFound, Unavailable
from app.http_errors import describe
from app.json_types import JSONObject

log = logging.getLogger(__name__)
KEEP_FINISHED = 200  # finished jobs kept in memory, with their live objects
KEEP_HISTORY = 1000  # finished jobs kept in the catalog
Work = Callable[[Progress], JSONObject]


class JobError(TypedDict):
    kind: str  # an error kind (app.errors), for error_from on the CLI's side
    message: str


@dataclass
class Job:
    id: str
    kind: str
    description: str
    progress: Progress
    cancel: threading.Event = field(default_factory=threading.Event)
    state: str = "running"  # running, done, failed (interrupted: only in the catalog, app.jobs.interrupted)
    result: JSONObject | None = None
    error: JobError | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    final: JSONObject | None = None  # the view once it ended, as recorded: its rate no longer changes

    def view(self) -> JSONObject:
        if self.final is not None:
            return self.final
        return {
            "id": self.id,
            "kind": self.kind,
            "description": self.description,
            "state": self.state,
            "progress": self.progress.as_dict(),
            "result": self.result,
            "error": self.error,
            "started": self.started,
            "finished": self.finished,
        }


def interrupted(record: JSONObject, when: float) -> JSONObject:
    """A job record that was running when the daemon stopped, as it stays from now on."""
    at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
    again = " (blocks it already stored are reused)" if record.get("kind") == "backup" else ""
    return {
        **record,
        "state": "interrupted",
        "finished": when,
        "error": {
            "kind": Unavailable.kind,
            "message": f"job {record.get('id')} ({record.get('description')}) was interrupted: the daemon stopped "
            f"while it ran (marked when it started again, {at}); nothing half-done was committed: run the command again{again}",
        },
    }


class JobRunner:
    """Runs jobs; `catalog` keeps their history across restarts (None: in memory only)."""

    def __init__(self, catalog: Catalog | None = None, instrument: Callable[[str, Work], Work] | None = None) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._instrument = instrument  # wraps each job's work (the daemon's metrics)
        self._catalog = catalog
        if catalog is not None:
            now = time.time()
            ended = catalog.end_running_jobs(lambda record: interrupted(record, now), now)
            if ended:
                log.warning("jobs interrupted by the last stop, now marked so: %s", ", ".join(ended))

    def submit(self, kind: str, description: str, work: Callable[[Progress], JSONObject]) -> Job:
        cancel = threading.Event()
        job = Job(secrets.token_hex(6), kind, description, Progress(cancel=cancel), cancel=cancel)
        self._record(job)  # before it runs: a crash from here on leaves it to be marked interrupted
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        if self._instrument is not None:
            work = self._instrument(kind, work)
        # the job's log lines carry the volume and request id of the request that started it
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._run, job, work), name=f"job-{kind}-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Progress], JSONObject]) -> None:
        logs.job_id.set(job.id)
        log.info("job %s started: %s", job.id, job.description)
        try:
            job.result = work(job.progress)
            job.state = "done"
            log.info("job %s done: %s", job.id, job.description)
        except Exception as error:  # noqa: BLE001 - the job's error is the user's answer (bugs logged below)
            _, kind, message = describe(error)
            job.error = {"kind": kind, "message": message}
            job.state = "failed"
            level = logging.INFO if isinstance(error, ConvoyError) else logging.ERROR
            log.log(level, "job %s failed: %s: %s", job.id, job.description, message)
        finally:
            job.finished = time.time()
            job.final = job.view()
            try:
                self._record(job)
            except Exception as error:  # noqa: BLE001 - the result stays in memory; the next start marks it interrupted
                # (a job ending while the daemon stops finds the catalog closed)
                log.warning("job %s: could not record its end in the catalog: %s", job.id, error)
            job.done.set()

    def _record(self, job: Job) -> None:
        if self._catalog is not None:
            self._catalog.put_job(job.id, job.state, job.started, job.finished, job.view(), KEEP_HISTORY)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state != "running"]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            self._jobs.pop(job.id, None)

    def get(self, job_id: str) -> Job:
        """A job of this daemon's life (it can be cancelled and waited for)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} is not running in the daemon (`convoy job list` shows the jobs it knows)")
        return job

    def view(self, job_id: str) -> JSONObject:
        """A job as the control API shows it: a running one live, a past one as the catalog recorded it."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job.view()
        record = self._catalog.job(job_id) if self._catalog is not None else None
        if record is None:
            raise NotFound(
                f"job {job_id} is not known: it is older than the last {KEEP_HISTORY} finished jobs, or was never "
                "started here; `convoy job list` shows the jobs the daemon knows"
            )
        return record

    def views(self) -> builtins.list[JSONObject]:
        """Every job known, oldest first: the catalog's history with this life's jobs shown live."""
        with self._lock:
            live = {job.id: job.view() for job in self._jobs.values()}
        past = self._catalog.jobs() if self._catalog is not None else []
        merged = [live.pop(record["id"], record) for record in past]
        return merged + list(live.values())

    def list(self) -> builtins.list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def running(self) -> builtins.list[Job]:
        return [job for job in self.list() if job.state == "running"]
