"""What a PUT to S3 carries, as the server receives it (app/backup/objectstore/s3.py).

The body is not hashed into the signature (no SHA-256 of every block, over
http as over https), yet it still carries the CRC32 that S3 checks against
what arrived, so a body damaged in transit is refused by the server. An
endpoint that does not take unsigned bodies gets them signed. moto neither
checks that checksum nor refuses unsigned bodies, so the requests are read
here by a small endpoint that records them and answers as S3 does.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.backup import blocks
from app.backup.objectstore import open_store
from app.errors import Unavailable


class _Recorder(BaseHTTPRequestHandler):
    server: _RecordingEndpoint
    protocol_version = "HTTP/1.1"  # answers botocore's `Expect: 100-continue` at once, as S3 does

    def do_HEAD(self) -> None:  # the bucket exists
        self.server.requests.append((self.command, self.path, dict(self.headers.items()), b""))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        self._record()

    def do_POST(self) -> None:  # DeleteObjects
        self._record(b"<DeleteResult></DeleteResult>")

    def _record(self, answer: bytes = b"") -> None:
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        self.server.requests.append((self.command, self.path, dict(self.headers.items()), body))
        unsigned = self.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        refusal = self.server.refuse_all or (self.server.refuse_unsigned if unsigned else None)
        if refusal:
            status, code = refusal
            answer = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>no</Message></Error>".encode()
            self.send_response(status)
        else:
            self.send_response(200)
            self.send_header("ETag", '"0"')
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


class _RecordingEndpoint(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.refuse_unsigned: tuple[int, str] | None = None  # (status, S3 error code) for an unsigned body
        self.refuse_all: tuple[int, str] | None = None

    @property
    def puts(self) -> list[tuple[str, dict[str, str], bytes]]:
        return [(path, headers, body) for method, path, headers, body in self.requests if method == "PUT"]


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _content_sha256(headers: dict[str, str]) -> str:
    return _lower(headers)["x-amz-content-sha256"]


@pytest.fixture
def endpoint(monkeypatch) -> Iterator[_RecordingEndpoint]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
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
        lower = _lower(headers)
        assert lower["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        assert "AWS4-HMAC-SHA256" in lower["authorization"]  # the request itself is still signed
        crc = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
        assert lower["x-amz-checksum-crc32"] == crc


@pytest.mark.parametrize("refusal", [(400, "XAmzContentSHA256Mismatch"), (403, "SignatureDoesNotMatch")])
def test_an_endpoint_that_refuses_unsigned_bodies_gets_them_signed(endpoint, refusal, caplog):
    endpoint.refuse_unsigned = refusal
    store = open_store("s3://bkt@us-east-1/p", s3_endpoint=endpoint.url)
    data = os.urandom(1 << 20)
    with caplog.at_level(logging.WARNING):
        store.put("blocks/ab/cd", blocks.encode(data))
    head_bucket, *_ = endpoint.requests  # opening the store asks about the bucket, signed as ever
    assert head_bucket[0] == "HEAD" and _content_sha256(head_bucket[2]) == hashlib.sha256(b"").hexdigest()
    first, again = endpoint.puts
    assert _content_sha256(first[1]) == "UNSIGNED-PAYLOAD"
    assert _content_sha256(again[1]) == hashlib.sha256(again[2]).hexdigest() and again[2] == first[2]
    assert "refuses unsigned request bodies" in caplog.text and "s3://bkt@us-east-1/p" in caplog.text

    # from then on every body is signed at once: one request each, a batch delete too
    store.put("volumes/v/volume.json", b"{}")
    store.delete_many(["blocks/ab/cd"])
    later = endpoint.requests[-2:]
    assert [(method, _content_sha256(headers)) for method, _p, headers, _b in later] == [
        ("PUT", hashlib.sha256(b"{}").hexdigest()),
        ("POST", hashlib.sha256(later[1][3]).hexdigest()),
    ]


def test_wrong_credentials_fail_signed_too_and_the_next_body_is_unsigned_again(endpoint):
    """SignatureDoesNotMatch is also what wrong credentials get: the signed retry's answer is the error."""
    endpoint.refuse_all = (403, "SignatureDoesNotMatch")
    store = open_store("s3://bkt@us-east-1/p", s3_endpoint=endpoint.url)
    for _ in range(2):
        with pytest.raises(Unavailable, match="SignatureDoesNotMatch"):
            store.put("volumes/v/volume.json", b"{}")
    assert [_content_sha256(h) for _p, h, _b in endpoint.puts] == ["UNSIGNED-PAYLOAD", hashlib.sha256(b"{}").hexdigest()] * 2
