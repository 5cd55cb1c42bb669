"""One HTTP/1.1 request over a Unix socket, on the bare socket module.

The CLI makes one request per command (a job's progress bar, one per
poll), to a daemon on the same host. http.client would do it too, but its
import (email, ssl) costs ~20 ms of a command that should take 100 ms in
all; this is the small part of HTTP the CLI needs: a request with
`Connection: close`, and an answer read to the end and parsed. What does
not parse is reported as `NotHTTP` or `Truncated`, for the caller to word.
"""

from __future__ import annotations

import socket

MAX_HEAD = 64 * 1024  # status line and headers: anything longer is not an HTTP server we know


class NotHTTP(Exception):
    """The peer answered, but not with HTTP."""


class Truncated(Exception):
    """The peer closed the connection before the whole answer was sent (nothing, part of the headers or body)."""


def exchange(path: str, method: str, target: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
    """Send one request to the server on Unix socket `path` and read its whole answer: (status, body).

    OSError subclasses (no socket, refused, no permission, timeout, reset)
    reach the caller unchanged.
    """
    head = [f"{method} {target} HTTP/1.1", "Host: localhost", "Connection: close", "Accept: application/json"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + (body or b"")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)  # for the connect and each read, as http.client's timeout
        sock.connect(path)
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(256 * 1024):
            chunks.append(chunk)
    return parse_answer(b"".join(chunks))


def parse_answer(data: bytes) -> tuple[int, bytes]:
    head, separator, rest = data.partition(b"\r\n\r\n")
    if not data.startswith(b"HTTP/"[: len(data)]):  # a shorter start may be the beginning of one
        raise NotHTTP(repr(data[:40].decode("ascii", "replace")))
    if not separator:
        if len(head) > MAX_HEAD:
            raise NotHTTP("headers without an end")
        raise Truncated("the headers")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, _, after = status_line.partition(" ")
    code = after[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
        raise NotHTTP(repr(status_line[:40]))
    headers = {}
    for header in header_lines:
        name, colon, value = header.partition(":")
        if not colon:
            raise NotHTTP(f"header line {header[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return int(code), _unchunk(rest)
    if "content-length" in headers:
        length = headers["content-length"]
        if not length.isdigit():
            raise NotHTTP(f"Content-Length {length[:20]!r}")
        if len(rest) < int(length):
            raise Truncated("the body")
        rest = rest[: int(length)]
    return int(code), rest


def _unchunk(data: bytes) -> bytes:
    body: list[bytes] = []
    while True:
        size_line, separator, data = data.partition(b"\r\n")
        if not separator:
            raise Truncated("the body")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise NotHTTP(f"chunk size {size_line[:20]!r}") from None
        if size == 0:
            return b"".join(body)
        if len(data) < size + 2:
            raise Truncated("the body")
        body.append(data[:size])
        data = data[size + 2 :]
