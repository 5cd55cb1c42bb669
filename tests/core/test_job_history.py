"""Job history in a real catalog: bounded, and a restart marks what was running as interrupted."""

import time

from app.catalog import Catalog
from app.jobs import KEEP_HISTORY, JobRunner


def finished_job(catalog: Catalog, job_id: str, finished: float, keep: int = KEEP_HISTORY) -> None:
    record = {"id": job_id, "kind": "verify", "description": f"verify {job_id}", "state": "done", "finished": finished}
    catalog.put_job(job_id, "done", finished - 1, finished, record, keep)


def test_only_the_newest_finished_jobs_are_kept_and_running_ones_always(tmp_path):
    catalog = Catalog(tmp_path / "catalog.db")
    catalog.put_job("running-1", "running", 1.0, None, {"id": "running-1", "state": "running"}, 3)
    for n in range(6):
        finished_job(catalog, f"job-{n}", 100.0 + n, keep=3)
    assert [j["id"] for j in catalog.jobs()] == ["running-1", "job-3", "job-4", "job-5"]


def test_a_new_runner_marks_the_jobs_a_stop_cut_short_as_interrupted(tmp_path):
    catalog = Catalog(tmp_path / "catalog.db")
    record = {"id": "abc", "kind": "backup", "description": "backup of snapshot s1 to vfs:///x", "state": "running"}
    catalog.put_job("abc", "running", 10.0, None, record, KEEP_HISTORY)
    finished_job(catalog, "old", 5.0)

    before = time.time()
    runner = JobRunner(catalog)  # what the daemon does at start
    job = runner.view("abc")
    assert job["state"] == "interrupted"
    assert before <= job["finished"] <= time.time()
    assert job["error"]["kind"] == "unavailable"
    assert "run the command again" in job["error"]["message"] and "blocks it already stored are reused" in job["error"]["message"]
    assert runner.view("old")["state"] == "done"  # a finished job keeps its outcome
    assert [j["id"] for j in runner.views()] == ["old", "abc"]


def test_a_job_is_recorded_when_it_starts_and_when_it_ends(tmp_path):
    catalog = Catalog(tmp_path / "catalog.db")
    runner = JobRunner(catalog)
    job = runner.submit("verify", "verify of something", lambda progress: {"ok": True})
    assert job.done.wait(10)
    stored = catalog.job(job.id)
    assert stored is not None and stored["state"] == "done" and stored["result"] == {"ok": True}
    assert JobRunner(catalog).view(job.id) == stored  # and a later daemon shows it as it ended
