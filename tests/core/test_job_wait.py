"""A client waiting for a job hears of its end at once (`GET /v1/jobs/ID?wait=S`), not at its next poll.

Each incremental backup is a CLI call that waits for a job; polling every
0.2 s added up to 0.2 s to a job of 0.1 s.
"""

import threading

import pytest

from tests.core.test_restore_in_progress import BlockedRestore

pytestmark = pytest.mark.needs_root


def test_a_waiting_client_gets_the_jobs_end_as_it_happens_and_a_running_job_when_the_wait_is_over(daemon, tmp_path):
    restore = BlockedRestore(daemon, tmp_path)
    job_path = f"/jobs/{restore.job['id']}"

    status, job = daemon.control("GET", f"{job_path}?wait=0.2")
    assert (status, job["state"]) == (200, "running"), "a job still held must be answered as running when the wait is over"

    answers: list[tuple[int, dict]] = []
    waiter = threading.Thread(target=lambda: answers.append(daemon.control("GET", f"{job_path}?wait=30")))
    waiter.start()
    restore.fail()  # lets the restore go on; it fails on the damaged block
    waiter.join(20)
    assert answers, "the waiting request must be answered when the job ends, not when its 30 s are over"
    status, job = answers[0]
    assert (status, job["state"]) == (200, "failed"), job


@pytest.mark.parametrize("wait", ["-1", "31", "soon"])
def test_a_wait_that_is_not_a_number_of_seconds_up_to_30_is_refused_with_the_field_named(daemon, tmp_path, wait):
    daemon.cli("create", "vol", check=True)
    snapshot = daemon.cli("snapshot", "create", "vol", check=True).stdout.strip()
    status, job = daemon.control("POST", "/backups", {"snapshot": snapshot, "dest": f"vfs://{tmp_path / 'store'}"})
    assert status == 202, job
    status, answer = daemon.control("GET", f"/jobs/{job['id']}?wait={wait}")
    assert status == 400, answer
    assert "wait" in answer["error"]["message"], answer


def test_an_unknown_job_is_not_found_also_when_waited_on(daemon):
    status, answer = daemon.control("GET", "/jobs/0123456789ab?wait=5")
    assert status == 404, answer
    assert "not known" in answer["error"]["message"]
