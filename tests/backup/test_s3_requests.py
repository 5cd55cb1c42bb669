"""What a PUT to S3 carries, as the server receives it (app/backup/objectstore/s3.py).

The body is not hashed into the signature (no SHA-256 of every block, over
http as over https), yet it still carries the CRC32 that S3 checks against
what arrived, so a body damaged in transit is refused by the server. moto does
not check that checksum, so the request is read here by a small endpoint
that records it and answers as S3 does.
"""

from __future__ import annotations

import base64
import os
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.backup import blocks
from app.backup.objectstore import open_store


class _Recorder(BaseHTTPRequestHandler):
    server: _RecordingEndpoint

    def do_HEAD(self) -> None:  # the bucket exists
        self.send_response(200)
        self.end_headers()

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        self.server.puts.append((self.path, dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _RecordingEndpoint(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.puts: list[tuple[str, dict[str, str], bytes]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def endpoint(monkeypatch) -> Iterator[_RecordingEndpoint]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = _RecordingEndpoint()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_block_put_is_not_hashed_into_the_signature_but_carries_its_crc32(endpoint):
    store = open_store("s3://bkt@us-east-1/p", s3_endpoint=endpoint.url)
    data = bytes(range(256)) * 4096  # 1 MiB, compressible: zstd's own frame
    store.put("blocks/ab/cd", blocks.encode(data))
    store.put("blocks/ef/01", blocks.encode(os.urandom(1 << 20)))  # random: a raw frame, written in parts

    assert [path for path, _h, _b in endpoint.puts] == ["/bkt/p/blocks/ab/cd", "/bkt/p/blocks/ef/01"]
    for _path, headers, body in endpoint.puts:
        lower = {k.lower(): v for k, v in headers.items()}
        assert lower["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert "AWS4-HMAC-SHA256" in lower["authorization"]  # the request itself is still signed
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        assert lower["x-amz-checksum-crc32"] == crc
