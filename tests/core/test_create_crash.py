"""kill -9 while Docker creates volumes several at a time (their commits are shared).

Whatever the moment of the kill: every create answered "ok" survives it, with
its directory and its record on the shared path, and every create that was
under way can be sent again (as Docker retries) and gives a whole volume.
"""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from tests.daemon_harness import wait_until

pytestmark = pytest.mark.needs_root

WORKERS = 8  # Docker's parallel creates, as the benchmark sends them


def creates_until_killed(daemon, prefix: str, kill_after: int) -> tuple[set[str], set[str]]:
    """WORKERS threads create volumes until `kill_after` were answered, then kill -9: (answered, attempted)."""
    answered: set[str] = set()
    attempted: set[str] = set()
    lock = threading.Lock()

    def create(worker: int) -> None:
        for i in range(10_000):
            name = f"{prefix}-w{worker}-{i}"
            with lock:
                attempted.add(name)
            try:
                status, body = daemon.docker("Create", {"Name": name})
            except (OSError, http.client.HTTPException):
                return  # killed under this request: Docker would see an error and retry
            assert status == 200 and not body.get("Err"), body
            with lock:
                answered.add(name)

    threads = [threading.Thread(target=create, args=(worker,)) for worker in range(WORKERS)]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: len(answered) >= kill_after, 60)
    daemon.kill9()
    for thread in threads:
        thread.join(30)
    return answered, attempted


def test_kill9_during_concurrent_creates_loses_no_answered_volume(daemon):
    for round_, kill_after in enumerate((5, 40, 120)):  # early, while groups form, once they are long
        answered, attempted = creates_until_killed(daemon, f"r{round_}", kill_after)
        daemon.start()
        daemon.wait_ready()

        listed = {volume["Name"] for volume in daemon.docker_ok("List")["Volumes"]}
        lost = sorted(answered - listed)
        assert not lost, f"answered ok before the kill, gone after it: {lost}"
        records = daemon.root / "vfs" / ".convoy" / "volumes"
        for name in answered:
            assert daemon.docker_ok("Get", {"Name": name})["Volume"]["Name"] == name
            assert (daemon.root / "vfs" / name).is_dir()
            assert json.loads((records / f"{name}.json").read_text())["name"] == name
        for name in attempted - answered:  # under way at the kill: Docker's retry makes it whole
            daemon.docker_ok("Create", {"Name": name})
            assert (daemon.root / "vfs" / name).is_dir()
            mountpoint = daemon.docker_ok("Mount", {"Name": name, "ID": "retry"})["Mountpoint"]
            daemon.docker_ok("Unmount", {"Name": name, "ID": "retry"})
            assert mountpoint
            daemon.docker_ok("Remove", {"Name": name})
