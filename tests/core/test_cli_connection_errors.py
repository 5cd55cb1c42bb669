"""When the daemon dies or answers garbage mid-request, the CLI says so in one line and exits 5.

It used to print a 56-line traceback (http.client.RemoteDisconnected).
"""

import socket
import subprocess
import threading

import pytest

from tests.core.silent_endpoint import SilentEndpoint
from tests.daemon_harness import CONVOY, REPO

UNAVAILABLE = 5
CLOSED = "closed the connection before answering"


def _read_request(connection: socket.socket) -> None:
    """Read the whole request (headers and body), so that what follows is the only answer the CLI gets."""
    connection.settimeout(0.3)
    try:
        while connection.recv(65536):
            pass
    except TimeoutError:
        pass


def _close_at_once(connection: socket.socket) -> None:
    connection.close()


def _read_then_close(connection: socket.socket) -> None:
    _read_request(connection)
    connection.close()


def _half_an_answer(connection: socket.socket) -> None:
    _read_request(connection)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"volu")
    connection.close()


def _half_the_headers(connection: socket.socket) -> None:
    _read_request(connection)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
    connection.close()


def _reset(connection: socket.socket) -> None:
    _read_request(connection)
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    connection.close()


def _not_http(connection: socket.socket) -> None:
    _read_request(connection)
    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
    connection.close()


def serve_once_each(path, behave) -> threading.Thread:
    """A fake daemon on a Unix socket that treats every connection with `behave`."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(30)

    def run():
        with server:
            while True:
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                behave(connection)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "behave, words",
    [
        (_close_at_once, CLOSED),
        (_read_then_close, CLOSED),
        (_half_an_answer, CLOSED),
        (_half_the_headers, CLOSED),
        (_reset, CLOSED),
        (_not_http, "answered with something that is not HTTP"),
    ],
    ids=["close-at-once", "read-then-close", "half-an-answer", "half-the-headers", "reset", "not-http"],
)
@pytest.mark.parametrize("args", [["list"], ["backup", "list", "vfs:///tmp/b"], ["create", "v1", "--backup", "vfs:///b?backup=b1&volume=v1"]])
def test_a_daemon_that_breaks_off_gives_one_line_and_exit_5(tmp_path, behave, words, args):
    sock = tmp_path / "convoy.sock"
    serve_once_each(sock, behave)
    result = subprocess.run(
        [*CONVOY, "--socket", str(sock), *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == UNAVAILABLE, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert words in result.stderr and str(sock) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.needs_root
def test_a_daemon_killed_mid_request_gives_one_line_and_exit_5(make_daemon):
    """kill -9 of a real daemon while the CLI waits for its answer (a backup list on a silent endpoint)."""
    with SilentEndpoint() as silent_endpoint:
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": silent_endpoint.url}
        daemon = make_daemon(env=env)
        cli = subprocess.Popen(
            [*CONVOY, "--socket", str(daemon.socket), "backup", "list", "s3://bucket@us-east-1/x"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert silent_endpoint.wait_for_connections(1, timeout=15) >= 1, "the request must be under way"
        daemon.kill9()
        _, stderr = cli.communicate(timeout=30)
    assert cli.returncode == UNAVAILABLE, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert f"the daemon at {daemon.socket} {CLOSED}" in stderr, stderr
