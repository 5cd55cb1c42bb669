"""A stalled S3 endpoint never starves Docker.

The endpoint here accepts connections and never answers, as a hung S3 proxy
or a black-holed load balancer does. While dozens of `backup list` calls
hang on it, Docker's calls must answer at once (Docker marks a plugin that
does not answer in time as failed), a Docker create from a backup there must
fail inside its deadline and leave nothing behind, and the CLI must say
which endpoint did not answer.
"""

import contextlib
import json
import threading
import time
from functools import partial
from urllib.parse import quote

import pytest

from tests.core.silent_endpoint import SilentEndpoint
from tests.daemon_harness import UnixHTTPConnection, http_call

pytestmark = pytest.mark.needs_root

STORE = "s3://bucket@us-east-1/x"
BACKUP = f"{STORE}?backup=backup-1&volume=vol1"
HANGING_CALLS = 45
RESTORE_TIMEOUT = 6.0
# Docker-like patience: the store's calls hang for good, so a call stuck behind them never answers; the daemon's
# speed is not what is measured (benchmarks do that), and a loaded machine must not fail the test
DOCKER_ANSWERS_WITHIN = 10.0


@pytest.fixture
def silent_endpoint():
    with SilentEndpoint() as endpoint:
        yield endpoint


def _env(endpoint: SilentEndpoint, attempts: int = 1) -> dict:
    # One attempt per call: the test waits for one read time-out (30 s), not for four.
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": endpoint.url,
        "AWS_MAX_ATTEMPTS": str(attempts),
    }


def _hang_backup_lists(daemon, count: int) -> list[threading.Thread]:
    """`count` concurrent `backup list` requests (what the CLI sends), left hanging."""

    def call():
        with contextlib.suppress(OSError):  # the daemon stops at the end of the test
            http_call(daemon.socket, "GET", f"/v1/backups?dest={quote(STORE, safe='')}")

    threads = [threading.Thread(target=call, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _timed(call):
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def _docker_call(daemon, path: str, body: dict):
    """One call as Docker makes it, given up after Docker-like patience (not the harness's 30 s)."""
    connection = UnixHTTPConnection(daemon.plugin_socket, timeout=DOCKER_ANSWERS_WITHIN + 5)
    try:
        connection.request("POST", path, body=json.dumps(body).encode())
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_docker_answers_while_store_calls_hang(make_daemon, silent_endpoint):
    daemon = make_daemon("--docker-restore-timeout", str(RESTORE_TIMEOUT), env=_env(silent_endpoint))
    daemon.cli("create", "vol1", check=True)
    _hang_backup_lists(daemon, HANGING_CALLS)
    assert silent_endpoint.wait_for_connections(16, timeout=15) >= 16, "the backup lists must be hanging on the endpoint"

    for path, body in [
        ("/VolumeDriver.List", {}),
        ("/VolumeDriver.Get", {"Name": "vol1"}),
        ("/VolumeDriver.Capabilities", {}),
        ("/Plugin.Activate", {}),
        ("/VolumeDriver.Path", {"Name": "vol1"}),
    ]:
        seconds, (status, data) = _timed(partial(_docker_call, daemon, path, body))
        assert status == 200 and not data.get("Err"), (path, data)
        assert seconds < DOCKER_ANSWERS_WITHIN, f"{path} took {seconds:.1f} s while store calls hang"

    # Docker's create from a backup in the silent store: an answer inside the deadline, nothing created
    seconds, (status, data) = _timed(lambda: daemon.docker("Create", {"Name": "restored", "Opts": {"backup": BACKUP}}))
    assert seconds < RESTORE_TIMEOUT + 3, f"Docker's create took {seconds:.1f} s"
    assert status != 200
    message = data["Err"]
    assert "did not answer in time for Docker's volume create" in message, message
    assert "nothing was created" in message and "convoy create restored --backup" in message, message
    assert [v["Name"] for v in daemon.docker_ok("List")["Volumes"]] == ["vol1"]
    assert not (daemon.root / "vfs" / "restored").exists()
    # and the control socket's own volume calls are not stuck behind the store calls either
    seconds, listed = _timed(lambda: daemon.cli("list", check=True))
    assert "vol1" in listed.stdout and seconds < 10
    assert "Traceback" not in daemon.log_text()


def test_backup_list_on_a_silent_endpoint_names_it(make_daemon, silent_endpoint):
    daemon = make_daemon(env=_env(silent_endpoint))
    seconds, result = _timed(lambda: daemon.cli("backup", "list", STORE))
    assert result.returncode == 5, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert silent_endpoint.url in result.stderr and "cannot reach the S3 endpoint" in result.stderr, result.stderr
    assert seconds < 60, f"one attempt must end at its read time-out, not after {seconds:.0f} s"
    assert "Traceback" not in daemon.log_text()


CREATES = 34  # more than the plugin socket's 32 worker threads


def test_docker_answers_while_its_own_creates_from_a_backup_wait(make_daemon, silent_endpoint):
    """More Docker creates from the silent store than Docker has threads: List, Get and Mount still answer."""
    daemon = make_daemon("--docker-restore-timeout", "14", env=_env(silent_endpoint))  # 2 x 14 s < the harness's 30 s
    daemon.cli("create", "vol1", check=True)
    answers = []

    def create(i):
        answers.append(daemon.docker("Create", {"Name": f"restored{i}", "Opts": {"backup": BACKUP}}))

    threads = [threading.Thread(target=create, args=(i,), daemon=True) for i in range(CREATES)]
    for thread in threads:
        thread.start()
    # Every create now holds a thread and waits for the store. The first seconds go to setting
    # up 34 S3 clients (CPU, under the GIL); Docker's patience is measured once that is done.
    time.sleep(5)
    for path, body in [
        ("/VolumeDriver.List", {}),
        ("/VolumeDriver.Get", {"Name": "vol1"}),
        ("/VolumeDriver.Mount", {"Name": "vol1", "ID": "c1"}),
        ("/VolumeDriver.Unmount", {"Name": "vol1", "ID": "c1"}),
    ]:
        seconds, (status, data) = _timed(partial(_docker_call, daemon, path, body))
        assert status == 200 and not data.get("Err"), (path, data)
        assert seconds < DOCKER_ANSWERS_WITHIN, f"{path} took {seconds:.1f} s while Docker's creates wait"
        assert not answers, f"{path} answered only once Docker's creates gave up"
    for thread in threads:
        thread.join(60)
    assert len(answers) == CREATES and all("did not answer in time" in data["Err"] for _, data in answers)
    assert [v["Name"] for v in daemon.docker_ok("List")["Volumes"]] == ["vol1"]
