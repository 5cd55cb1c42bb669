"""Long operations (backup, restore, verify, delete) run as jobs on the daemon.

A job runs in its own thread and reports progress; the CLI polls it and
draws a progress bar. Leaving the CLI (Ctrl-C) leaves the job running: the
operations are crash-safe on their own, so neither a dropped client nor a
cancel corrupts anything. Jobs live in memory: after a daemon restart the
CLI is told the job is gone and to run the command again.
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
from app.errors import ConvoyError, NotFound
from app.http_errors import describe
from app.json_types import JSONObject

log = logging.getLogger(__name__)
KEEP_FINISHED = 200
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
    state: str = "running"  # running, done, failed
    result: JSONObject | None = None
    error: JobError | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def view(self) -> JSONObject:
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


class JobRunner:
    def __init__(self, instrument: Callable[[str, Work], Work] | None = None) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._instrument = instrument  # wraps each job's work (the daemon's metrics)

    def submit(self, kind: str, description: str, work: Callable[[Progress], JSONObject]) -> Job:
        cancel = threading.Event()
        job = Job(secrets.token_hex(6), kind, description, Progress(cancel=cancel), cancel=cancel)
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
            job.done.set()

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.state != "running"]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            self._jobs.pop(job.id, None)

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} is not known: the daemon may have restarted since; run the command again")
        return job

    def list(self) -> builtins.list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def running(self) -> builtins.list[Job]:
        return [job for job in self.list() if job.state == "running"]
