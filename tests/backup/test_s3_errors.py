"""Every S3 failure becomes one of our errors through one table (app/backup/objectstore/s3_errors.py).

Each row of the table is checked once as a value; then the failures that a
real endpoint can give are met for real: moto for missing buckets and keys
and unknown credentials, a small HTTP endpoint that answers every request
with one S3 error document for the service's own errors, a silent and a
hanging-up endpoint for time-outs and dropped connections.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.exceptions as bex
import pytest

from app.backup.objectstore import open_store
from app.backup.objectstore import s3 as s3_module
from app.backup.objectstore.s3_errors import CLIENT_CODES, TRANSPORT, MissingObject, S3Call, translate
from app.errors import Conflict, ConvoyError, InvalidInput, NotFound, Unavailable
from tests.core.silent_endpoint import SilentEndpoint
from tests.moto_server import moto_server

CALL = S3Call(
    url="s3://bkt@us-east-1/p (endpoint http://s3.test)",
    bucket="bkt",
    endpoint="http://s3.test",
    what="read blocks/ab/cd",
    key="blocks/ab/cd",
)
BUCKET_CALL = S3Call(url=CALL.url, bucket="bkt", endpoint=CALL.endpoint, what="open the bucket")


@pytest.fixture(autouse=True)
def _one_attempt_with_credentials(monkeypatch):
    """One attempt per call (botocore retries 5xx and throttling otherwise) and
    credentials, which the endpoints here other than moto-with-auth never check."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def client_error(code: str, status: int = 400) -> bex.ClientError:
    return bex.ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


# -- the table, row by row --------------------------------------------------------------------

@pytest.mark.parametrize("code", list(CLIENT_CODES))
def test_each_client_code_maps_to_its_kind_and_names_the_store(code):
    error = translate(client_error(code), CALL)
    expected, _text = CLIENT_CODES[code]
    assert type(error) is expected
    assert CALL.url in str(error) or "'bkt'" in str(error), error


@pytest.mark.parametrize(
    "call, expected, words", [(CALL, MissingObject, "blocks/ab/cd is missing"), (BUCKET_CALL, NotFound, "does not exist")]
)
def test_a_bare_404_is_the_key_or_else_the_bucket(call, expected, words):
    """A HEAD's error has no body: only its status says 404."""
    headless = bex.ClientError({"Error": {}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "HeadObject")
    for error in (translate(headless, call), translate(client_error("NotFound", 404), call)):
        assert type(error) is expected and words in str(error), error


def test_an_unknown_code_is_unavailable_and_says_the_code():
    error = translate(client_error("SomethingNew"), CALL)
    assert type(error) is Unavailable and "SomethingNew" in str(error)


TRANSPORT_SAMPLES = {
    "NoCredentialsError": {},
    "PartialCredentialsError": {"provider": "env", "cred_var": "AWS_SECRET_ACCESS_KEY"},
    "CredentialRetrievalError": {"provider": "sso", "error_msg": "expired"},
    "EndpointConnectionError": {"endpoint_url": "http://s3.test"},
    "ConnectTimeoutError": {"endpoint_url": "http://s3.test"},
    "ReadTimeoutError": {"endpoint_url": "http://s3.test"},
    "ConnectionClosedError": {"endpoint_url": "http://s3.test"},
    "ResponseStreamingError": {"error": "Connection reset by peer"},
    "IncompleteReadError": {"actual_bytes": 10, "expected_bytes": 20},
    "NoRegionError": {},
    "ParamValidationError": {"report": "Invalid bucket name"},
    "BotoCoreError": {},
}


def test_every_transport_row_has_a_sample():
    assert {name for names, _error, _text in TRANSPORT for name in names} == set(TRANSPORT_SAMPLES)


@pytest.mark.parametrize("name", list(TRANSPORT_SAMPLES))
def test_each_transport_failure_maps_to_its_kind(name):
    [expected] = [error for names, error, _text in TRANSPORT if name in names]
    error = translate(getattr(bex, name)(**TRANSPORT_SAMPLES[name]), CALL)
    assert type(error) is expected, error
    assert "damaged" not in str(error)  # a network failure never reads as a damaged backup


def test_what_is_not_an_s3_failure_is_returned_unchanged():
    original = ValueError("a bug of ours")
    assert translate(original, CALL) is original


# -- the same failures from real endpoints ------------------------------------------------------

def test_moto_missing_bucket_key_and_a_bucket_removed_under_the_store(s3_endpoint, s3_bucket):
    import boto3

    store = open_store(f"s3://{s3_bucket}@us-east-1/p", s3_endpoint=s3_endpoint)
    with pytest.raises(MissingObject, match="k1 is missing from"):
        store.get("k1")
    with pytest.raises(MissingObject, match="k1 is missing from"):
        store.size("k1")
    assert not store.exists("k1")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").delete_bucket(Bucket=s3_bucket)
    with pytest.raises(NotFound, match=f"bucket '{s3_bucket}' does not exist") as err:
        list(store.list("blocks/"))
    assert not isinstance(err.value, MissingObject)
    with pytest.raises(NotFound, match="does not exist"):
        open_store(f"s3://{s3_bucket}@us-east-1/p", s3_endpoint=s3_endpoint)
    store.close()



@pytest.fixture(scope="module")
def moto_with_auth(tmp_path_factory) -> Iterator[str]:
    """A moto server that checks credentials, as AWS does (the shared one accepts any)."""
    with moto_server(tmp_path_factory.mktemp("moto-auth"), env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as endpoint:
        yield endpoint


def test_moto_unknown_access_key_is_refused_naming_the_code(moto_with_auth, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOBODYKNOWS00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(Unavailable) as err:
        open_store("s3://bkt@us-east-1/p", s3_endpoint=moto_with_auth)
    assert "S3 refused to open the bucket" in str(err.value) and "check the credentials" in str(err.value), err.value


class _Answer(BaseHTTPRequestHandler):
    """Answers every request with the server's (status, code) as an S3 error document."""

    server: _ErrorEndpoint

    def _answer(self) -> None:
        status, code = self.server.answer
        body = b"" if self.command == "HEAD" else (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>m</Message></Error>'.encode()
        )
        self.send_response(status)
        if status == 301:  # as AWS does: botocore asks the bucket's region again without it, for ever
            self.send_header("x-amz-bucket-region", "eu-west-1")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


class _ErrorEndpoint(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Answer)
        self.answer = (500, "InternalError")
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def error_endpoint() -> Iterator[_ErrorEndpoint]:
    server = _ErrorEndpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


SERVICE_ERRORS = [
    (503, "SlowDown", Unavailable, "retry later"),
    (500, "InternalError", Unavailable, "retry later"),
    (403, "AccessDenied", Unavailable, "check the credentials"),
    (403, "RequestTimeTooSkewed", Unavailable, "clock is wrong"),
    (301, "PermanentRedirect", InvalidInput, "write its region in the URL"),
    (400, "AuthorizationHeaderMalformed", InvalidInput, "write its region in the URL"),
    (403, "InvalidObjectState", Conflict, "archive storage class"),
    (418, "Teapot", Unavailable, "Teapot"),
]


@pytest.mark.parametrize("status, code, expected, words", SERVICE_ERRORS, ids=[e[1] for e in SERVICE_ERRORS])
def test_an_endpoint_answering_an_error_document(error_endpoint, monkeypatch, status, code, expected, words):
    error_endpoint.answer = (200, "")
    store = open_store("s3://bkt@us-east-1/p", s3_endpoint=error_endpoint.url)
    error_endpoint.answer = (status, code)
    with pytest.raises(ConvoyError) as err:
        store.get("blocks/ab/cd")
    assert type(err.value) is expected and words in str(err.value), err.value
    store.close()


def test_an_endpoint_that_never_answers_is_a_read_timeout(monkeypatch):
    monkeypatch.setattr(s3_module, "READ_TIMEOUT", 0.5)
    with SilentEndpoint() as silent, pytest.raises(Unavailable) as err:
        open_store("s3://bkt@us-east-1/p", s3_endpoint=silent.url)
    assert f"cannot reach the S3 endpoint {silent.url} while trying to open the bucket" in str(err.value), err.value


class _HangUp(BaseHTTPRequestHandler):
    """Promises a 1 MiB body, sends a little of it, hangs up."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"x" * 1000)
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args: object) -> None:
        pass


def test_a_connection_dropped_mid_body_is_unavailable_not_damaged():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HangUp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = open_store("s3://bkt@us-east-1/p", s3_endpoint=f"http://127.0.0.1:{server.server_address[1]}")
        for read in (lambda: store.get("blocks/ab/cd"), lambda: store.get_at_most("blocks/ab/cd", 2 << 20, "block")):
            with pytest.raises(Unavailable) as err:
                read()
            assert "dropped the connection while trying to read blocks/ab/cd" in str(err.value), err.value
        store.close()
    finally:
        server.shutdown()
        server.server_close()
