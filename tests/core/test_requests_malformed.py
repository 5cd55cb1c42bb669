"""Malformed requests on both sockets get a clear error naming what is wrong, and change nothing.

Each row is one request a careless client (or an attacker) might send. The
answer must name the field that is wrong; it must never be "internal error",
and the daemon log must never hold a traceback.
"""

import json
import socket
import time

import pytest

from tests.daemon_harness import http_call

pytestmark = pytest.mark.needs_root

DEEP = 100_000  # nesting depth that once blew Python's recursion limit
DEEP_JSON = ("[" * DEEP + "]" * DEEP).encode()
BACKUP_URL = "vfs:///tmp/convoy-nowhere?backup=b1&volume=v1"


def deep_body(prefix: str) -> bytes:
    """`{prefix ... : <100k nested lists>}`: well-formed JSON nested far beyond any sane document."""
    return prefix.encode() + DEEP_JSON + b"}"


def assert_clear(daemon, message: str, words: list[str]) -> None:
    for word in words:
        assert word in message, message
    assert "internal error" not in message, message
    assert "Traceback" not in daemon.log_text(), daemon.log_text()[-3000:]


# Docker's plugin socket: (endpoint, body as JSON or raw bytes, words the Err must contain)
DOCKER_CASES = [
    ("Create", {"Name": "v1", "Opts": "size=1G"}, ["Opts", "object"]),
    ("Create", {"Name": "v1", "Opts": ["size", "1G"]}, ["Opts"]),
    ("Create", {"Name": "v1", "Opts": {"backup": 5}}, ["Opts.backup", "string"]),
    ("Create", {"Name": "v1", "Opts": {"backup": [BACKUP_URL]}}, ["Opts.backup"]),
    ("Create", {"Name": "v1", "Opts": {"size": 10}}, ["Opts.size", "string"]),
    ("Create", {"Name": "v1", "Opts": {"size": None}}, ["Opts.size"]),
    ("Create", {"Name": "v1", "Opts": {f"k{i}": "v" for i in range(1000)}}, ["Opts", "at most"]),
    ("Create", {"Name": "v1", "Opts": {"size": "1" * 100_000}}, ["Opts.size", "at most"]),
    ("Create", {"Name": 5}, ["Name", "string"]),
    ("Create", {"Name": None}, ["Name"]),
    ("Create", {"Name": ["v1"]}, ["Name"]),
    ("Create", {"Name": {"$ne": ""}}, ["Name"]),
    ("Create", [], ["object"]),
    ("Create", "v1", ["object"]),
    ("Create", 0, ["object"]),
    ("Create", deep_body('{"Name": "v1", "Opts": '), ["recursion"]),
    ("Create", DEEP_JSON, ["recursion"]),
    ("Create", b'{"Name": "v1"', ["Invalid JSON"]),
    ("Create", b'{"Name": "\xff\xfe"}', ["Invalid JSON"]),
    ("Remove", {"Name": 5}, ["Name"]),
    ("Mount", {"Name": "v1", "ID": 5}, ["ID", "string"]),
    ("Mount", {"Name": "v1", "ID": {"a": 1}}, ["ID"]),
    ("Mount", {"Name": True, "ID": "c1"}, ["Name"]),
    ("Unmount", {"Name": "v1", "ID": ["c1"]}, ["ID"]),
    ("Unmount", deep_body('{"Name": "v1", "ID": '), ["recursion"]),
    ("Path", {"Name": 1.5}, ["Name"]),
    ("Get", {"Name": False}, ["Name"]),
    ("Get", [{"Name": "v1"}], ["object"]),
]


def _raw(body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.mark.parametrize("endpoint, body, words", DOCKER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(DOCKER_CASES)])
def test_malformed_docker_request(daemon, endpoint, body, words):
    status, data = http_call(daemon.plugin_socket, "POST", f"/VolumeDriver.{endpoint}", raw=_raw(body))
    assert status != 200 and data["Err"], data
    assert f"Docker's {endpoint} request" in data["Err"], "the Err says which request was wrong"
    assert_clear(daemon, data["Err"], words)
    assert daemon.docker_ok("List")["Volumes"] == [], "a refused request creates nothing"


# The control socket: (method, path, body as JSON or raw bytes, status, words the message must contain)
CONTROL_CASES = [
    ("POST", "/v1/volumes", {"name": 5}, 400, ["name", "string"]),
    ("POST", "/v1/volumes", {"name": None}, 400, ["name"]),
    ("POST", "/v1/volumes", {}, 400, ["name", "required"]),
    ("POST", "/v1/volumes", {"name": "v1", "options": "size=1G"}, 400, ["options"]),
    ("POST", "/v1/volumes", {"name": "v1", "options": {"backup": 5}}, 400, ["options.backup", "string"]),
    ("POST", "/v1/volumes", {"name": "v1", "options": {f"k{i}": "v" for i in range(1000)}}, 400, ["options", "at most"]),
    ("POST", "/v1/volumes", {"name": "v1", "size": 10}, 400, ["size", "string"]),
    ("POST", "/v1/volumes", {"name": "v1", "driver": ["vfs"]}, 400, ["driver"]),
    ("POST", "/v1/volumes", [{"name": "v1"}], 400, ["object"]),
    ("POST", "/v1/volumes", deep_body('{"name": "v1", "options": '), 400, ["recursion"]),
    ("POST", "/v1/volumes", DEEP_JSON, 400, ["recursion"]),
    ("POST", "/v1/volumes", b"\x00\x01garbage", 400, ["Invalid JSON"]),
    ("POST", "/v1/volumes/v1/mount", {"mountpoint": 5}, 400, ["mountpoint", "string"]),
    ("POST", "/v1/volumes/v1/mount", {"mountpoint": ["/mnt/a"]}, 400, ["mountpoint"]),
    ("POST", "/v1/volumes/v1/umount", [1], 400, ["object"]),
    ("DELETE", "/v1/volumes/v1?reference_only=maybe", None, 400, ["reference_only", "boolean"]),
    ("POST", "/v1/snapshots", {"volume": 5}, 400, ["volume", "string"]),
    ("POST", "/v1/snapshots", {"volume": "v1", "name": 5}, 400, ["name", "string"]),
    ("POST", "/v1/snapshots", {"volume": "v1", "name": {"x": 1}}, 400, ["name"]),
    ("GET", "/v1/snapshots?volume=", None, 200, []),
    ("POST", "/v1/backups", {"snapshot": "s1", "dest": 5}, 400, ["dest", "string"]),
    ("POST", "/v1/backups", {"snapshot": "s1", "dest": "vfs:///tmp/x", "name": 5}, 400, ["name", "string"]),
    ("POST", "/v1/backups", {"snapshot": ["s1"], "dest": "vfs:///tmp/x"}, 400, ["snapshot"]),
    ("POST", "/v1/backups", {"snapshot": "s1", "dest": "vfs:///tmp/x", "s3_endpoint": 9000}, 400, ["s3_endpoint"]),
    ("GET", "/v1/backups", None, 400, ["dest", "required"]),
    ("POST", "/v1/backups/delete", {"url": 5}, 400, ["url", "string"]),
    ("POST", "/v1/backups/delete", {"url": BACKUP_URL, "s3_endpoint": []}, 400, ["s3_endpoint"]),
    ("POST", "/v1/backups/verify", {"url": {"backup": "b1"}}, 400, ["url"]),
    ("POST", "/v1/backups/verify", {}, 400, ["url", "required"]),
    ("POST", "/v1/restores", {"name": 5, "url": BACKUP_URL}, 400, ["name", "string"]),
    ("POST", "/v1/restores", {"name": "r1", "url": BACKUP_URL, "options": "x"}, 400, ["options"]),
    ("POST", "/v1/restores", {"name": "r1", "url": BACKUP_URL, "size": 1 << 70}, 400, ["size"]),
    ("POST", "/v1/restores", deep_body('{"name": "r1", "url": '), 400, ["recursion"]),
    ("POST", "/v1/jobs/abc/cancel", "cancel", 400, ["object"]),
]


@pytest.mark.parametrize(
    "method, path, body, status, words", CONTROL_CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CONTROL_CASES)]
)
def test_malformed_control_request(daemon, method, path, body, status, words):
    daemon.cli("create", "v1", check=True)
    got, data = http_call(daemon.socket, method, path, raw=None if body is None else _raw(body))
    assert got == status, data
    if status >= 400:
        assert data["error"]["kind"] == "invalid"
        assert_clear(daemon, data["error"]["message"], words)
    assert [v["Name"] for v in daemon.docker_ok("List")["Volumes"]] == ["v1"], "a refused request changes nothing"
    assert (daemon.root / "vfs" / "v1").is_dir()


# Request bodies larger than the cap are refused before they are read whole.

MiB = 1 << 20


def _send_oversized(sock_path, path: str, *, chunked: bool) -> tuple[int, dict]:
    """Announce (or stream) far more than the cap, stop sending early, and read the answer."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(10)
    conn.connect(str(sock_path))
    if chunked:
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    else:
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {400 * MiB}\r\n\r\n".encode())
    chunk = b'{"Name": "' + b"a" * (64 * 1024)
    try:
        for _ in range(40):  # 2.5 MiB at most: more than the cap, far less than announced
            conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
    except OSError:
        pass  # the daemon answered and closed while we were still sending
    answer = b""
    try:
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            data = conn.recv(65536)
            if not data:
                break
            answer += data
    finally:
        conn.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body[: _length(answer)])


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("which, path", [("plugin", "/VolumeDriver.Create"), ("control", "/v1/volumes")])
def test_oversized_bodies_are_refused_with_413(daemon, which, path, chunked):
    sock_path = daemon.plugin_socket if which == "plugin" else daemon.socket
    status, data = _send_oversized(sock_path, path, chunked=chunked)
    assert status == 413
    message = data["Err"] if which == "plugin" else data["error"]["message"]
    assert "larger than" in message and "1 MiB" in message, message
    assert "Traceback" not in daemon.log_text()
    assert daemon.docker_ok("List")["Volumes"] == []


@pytest.mark.parametrize(
    "body", [b"", b"{}", b"{}\n", b"null", b'{"Future": "field"}'], ids=["empty", "object", "newline", "null", "unknown-field"]
)
@pytest.mark.parametrize("endpoint", ["/Plugin.Activate", "/VolumeDriver.List", "/VolumeDriver.Capabilities"])
def test_what_docker_sends_to_endpoints_without_fields_is_accepted(daemon, endpoint, body):
    """Docker sends no body to Activate and `{}` to List and Capabilities; a newer Docker may add fields."""
    status, data = http_call(daemon.plugin_socket, "POST", endpoint, raw=body)
    assert status == 200 and not data.get("Err"), data


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("which, path", [("plugin", "/VolumeDriver.Create"), ("control", "/v1/volumes")])
def test_a_client_that_hangs_up_mid_body_leaves_no_traceback(daemon, which, path, chunked):
    """Docker or the CLI killed while sending: the daemon logs one line and goes on."""
    sock_path = daemon.plugin_socket if which == "plugin" else daemon.socket
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(sock_path))
    framing = "Transfer-Encoding: chunked\r\n\r\n7\r\n" if chunked else "Content-Length: 100\r\n\r\n"
    conn.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{framing}".encode() + b'{"Name"')
    conn.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(w in daemon.log_text() for w in ("hung up", "Traceback")):
        time.sleep(0.05)  # the daemon notices the hang-up on its own time
    assert daemon.docker_ok("List")["Volumes"] == []
    log = daemon.log_text()
    assert "the client hung up" in log
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
