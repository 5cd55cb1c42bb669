"""`s3://` stores: AWS S3 or any S3-compatible endpoint (MinIO, Ceph, moto).

boto3 with the standard credential chain (environment, shared files,
instance roles). A custom endpoint uses path-style addressing, which every
S3-compatible server understands. Listing follows every page (Convoy stopped
after the first 1000 keys). The client is thread-safe; its connection pool is
sized for the engine's parallel uploads. A put is one whole-object PUT, so
readers see all or nothing.

Every call has a deadline: an endpoint that accepts connections and never
answers holds a call for at most ATTEMPTS x (CONNECT_TIMEOUT + READ_TIMEOUT)
plus botocore's short backoff, then the user is told which endpoint did not
answer. AWS_MAX_ATTEMPTS, the standard AWS setting, changes the attempts.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO, Self

from app.errors import InvalidInput

from ..limits import check_size
from ..urls import StoreURL
from .base import ObjectStore, Stored
from .s3_errors import MissingObject, S3Call, client_error_code, translate

if TYPE_CHECKING:  # the stubs are a development dependency (boto3-stubs)
    import boto3.session
    from botocore.response import StreamingBody
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef, HeadObjectOutputTypeDef, ObjectIdentifierTypeDef

CONNECTIONS = 16
CONNECT_TIMEOUT = 5  # seconds to open a connection
READ_TIMEOUT = 30  # seconds of silence on an open connection (per read, not per object)
ATTEMPTS = 4  # in all, the first one included; botocore's "standard" retry mode
# what a server that does not take UNSIGNED-PAYLOAD answers a request that carries one
UNSIGNED_REFUSED = ("XAmzContentSHA256Mismatch", "SignatureDoesNotMatch")

log = logging.getLogger(__name__)


_loader: object | None = None
_loader_lock = threading.Lock()


def _new_session() -> boto3.session.Session:
    """A session of its own, so credentials are resolved afresh for every store opened,
    sharing one loader of botocore's service models: loading the S3 model's JSON
    took 70-230 ms of every store opened, and a restore from S3 opens its store twice."""
    import boto3
    import botocore.loaders
    import botocore.session

    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = botocore.loaders.create_loader()
        loader = _loader
    core = botocore.session.Session()
    core.register_component("data_loader", loader)
    return boto3.session.Session(botocore_session=core)


def _attempts() -> int:
    """ATTEMPTS, or AWS_MAX_ATTEMPTS when set (botocore ignores it once a Config names retries)."""
    value = os.environ.get("AWS_MAX_ATTEMPTS", "")
    return int(value) if value.isdigit() and int(value) > 0 else ATTEMPTS


class S3Store(ObjectStore):
    parallelism = 12  # requests in flight hide the round trips
    lookups = 12
    costly_listing = True
    sampled_lookups = True
    # a request costs a round trip and is billed: 4 MiB blocks make a quarter of
    # the requests of 1 MiB ones (a 1 GiB backup to the tests' S3 took 5.1 s
    # instead of 7.6 s), at the cost of re-uploading up to 4 MiB per changed block
    default_block_size = 4 << 20

    def __init__(self, url: StoreURL, endpoint: str | None = None, *, check: bool = True):
        self.bucket = url.bucket
        self.prefix = url.prefix + "/" if url.prefix else ""
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise InvalidInput(
                f"S3 endpoint {endpoint!r} must start with http:// or https://, "
                "for example http://minio.local:9000"
            )
        self.endpoint = endpoint
        self.url = str(url) + (f" (endpoint {endpoint})" if endpoint else "")
        self._session = _new_session()
        self._region = url.region
        if not self._region and endpoint:
            self._region = self._session.region_name or "us-east-1"
        self._unsigned_client: S3Client | None = None  # for bodies, made at the first (_send_body)
        self._sign_bodies = False  # the endpoint refused an unsigned body; a signed one went through
        self._lock = threading.Lock()
        try:
            self.client: S3Client = self._new_client(unsigned_bodies=False)
        except Exception as e:  # noqa: BLE001 - S3 failures become ours; others are raised as they are
            raise self._error(e, "open the store") from None
        if check:
            self._check_bucket()

    def _new_client(self, *, unsigned_bodies: bool) -> S3Client:
        import botocore.config

        # `unsigned_bodies`: no SHA-256 of each body for the signature, over http either
        # (botocore's default signs payloads on http, not on https): 0.6 s of CPU per GiB
        # here, beside a server on the same CPUs. The body keeps its CRC32 header, which S3
        # checks, and a reader trusts no object anyway (blocks are named by their hash,
        # manifests are validated), while http leaves every response unsigned whatever we
        # sign. Only bodies go this way: a request without one costs nothing to sign, and
        # is sent as botocore always sends it, which every endpoint takes.
        config = botocore.config.Config(
            retries={"total_max_attempts": _attempts(), "mode": "standard"},
            max_pool_connections=CONNECTIONS,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            # a GET checks the object's checksum only when asked (_get_object), not on every block
            response_checksum_validation="when_required",
            s3={
                **({"addressing_style": "path"} if self.endpoint else {}),
                **({"payload_signing_enabled": False} if unsigned_bodies else {}),
            },
        )
        return self._session.client("s3", region_name=self._region, endpoint_url=self.endpoint, config=config)

    def _send_body(self, request: Callable[[S3Client], object]) -> None:
        """Make a request that carries a body (a put, a batch delete), the body unsigned (_new_client).

        An endpoint that does not take unsigned bodies (older S3-compatible servers answer
        XAmzContentSHA256Mismatch, or SignatureDoesNotMatch) is asked again through `client`,
        which signs as botocore does by default; when that succeeds, every later body goes
        that way. When it fails, its own answer is the error (wrong credentials fail both ways)."""
        if not self._sign_bodies:
            from botocore.exceptions import ClientError

            with self._lock:
                if self._unsigned_client is None:
                    self._unsigned_client = self._new_client(unsigned_bodies=True)
                unsigned = self._unsigned_client
            try:
                request(unsigned)
                return
            except ClientError as e:
                if client_error_code(e) not in UNSIGNED_REFUSED:
                    raise
        request(self.client)
        with self._lock:
            if not self._sign_bodies:
                self._sign_bodies = True
                log.warning("%s refuses unsigned request bodies: signing each one from now on (slower)", self.url)

    # -- errors ---------------------------------------------------------
    def _error(self, exc: Exception, what: str, key: str | None = None) -> Exception:
        """Our error for `exc` (see s3_errors); `key`: the object the call was about, if any."""
        return translate(exc, S3Call(self.url, self.bucket, self.endpoint, what, key))

    def _check_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:  # noqa: BLE001 - mapped to user errors
            raise self._error(e, "open the bucket") from None

    # -- interface ------------------------------------------------------
    def put(self, key: str, data: Stored) -> None:
        body = b"".join(data) if isinstance(data, list) else bytes(data)
        try:
            self._send_body(lambda client: client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=body))
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"write {key}", key) from None

    def get(self, key: str) -> bytes:
        with self.open(key) as body:
            return body.read()

    def get_at_most(self, key: str, max_size: int, what: str, *, view: bool = False, self_checked: bool = False) -> bytes:
        """One GET: its ContentLength is checked before the body is read, and
        the read stops past `max_size` whatever the header said.

        Read until the body ends: botocore checks the length it was promised
        only on the read that finds the end, and a connection dropped
        mid-body otherwise passes for a short object (then "damaged")."""
        where = f"{what} {key} in {self.url}"
        response = self._get_object(key, transfer_checksum=not self_checked)
        chunks: list[bytes] = []
        total = 0
        with self._body(key, response) as body:
            check_size(int(response.get("ContentLength") or 0), max_size, where)
            while total <= max_size and (chunk := body.read(max_size + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
        check_size(total, max_size, where)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def open(self, key: str) -> BinaryIO:
        return self._body(key, self._get_object(key))  # type: ignore[return-value]  # _Body reads like a binary file

    def _body(self, key: str, response: GetObjectOutputTypeDef) -> _Body:
        """The response's body, its read failures ours (never botocore's `with`: see _Body)."""
        return _Body(response["Body"], lambda e: self._error(e, f"read {key}", key))

    def _get_object(self, key: str, transfer_checksum: bool = True) -> GetObjectOutputTypeDef:
        """`transfer_checksum`: check the object's stored checksum (CRC32), where it has one,
        against the bytes received. Blocks skip it: their BLAKE3 name is checked after
        the read anyway, and the CRC32 cost ~0.4 s of CPU per GB restored."""
        try:
            if transfer_checksum:
                return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key, ChecksumMode="ENABLED")
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"read {key}", key) from None

    def _head(self, key: str) -> HeadObjectOutputTypeDef:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"check {key}", key) from None

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except MissingObject:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def list(self, prefix: str) -> Iterator[str]:
        for key, _stamp in self.list_stamped(prefix):
            yield key

    def list_stamped(self, prefix: str) -> Iterator[tuple[str, str]]:
        """A whole-object PUT gives a new ETag (the MD5 of the body for a
        single-part PUT, which is all this store makes) and keeps it when the
        bucket is copied, so a cache stays valid in the copy."""
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"][strip:], f"{obj.get('Size', 0)}:{obj.get('ETag', '')}"
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"list {prefix or 'the store'}") from None

    def list_folders(self, prefix: str) -> Iterator[str]:
        """One request per 1000 folders, whatever they hold (S3 lists keys, not
        folders: a listing with a delimiter folds each folder into one name)."""
        paginator = self.client.get_paginator("list_objects_v2")
        start = len(self.prefix) + len(prefix)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    yield common["Prefix"][start:].rstrip("/")
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"list {prefix or 'the store'}") from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"delete {key}", key) from None

    def delete_many(self, keys: builtins.list[str]) -> None:
        """Delete in batches of 1000 (one request each)."""
        for i in range(0, len(keys), 1000):
            batch: builtins.list[ObjectIdentifierTypeDef] = [{"Key": self.prefix + k} for k in keys[i : i + 1000]]
            try:
                self._send_body(functools.partial(self._delete_batch, batch=batch))
            except Exception as e:  # noqa: BLE001
                raise self._error(e, "delete unused blocks") from None

    def _delete_batch(self, client: S3Client, batch: builtins.list[ObjectIdentifierTypeDef]) -> None:
        client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def close(self) -> None:
        for client in (self.client, self._unsigned_client):
            if client is not None:
                with contextlib.suppress(Exception):  # nothing to answer: the connections go with the process
                    client.close()


class _Body:
    """A GET's body whose read failures are the store's errors: a timeout or a
    dropped connection mid-read is Unavailable (retry), not an OSError a
    reader would take for a damaged object, nor a botocore error it does not know.

    botocore's own body must never be used as `with body as raw`: its
    __enter__ hands out the raw urllib3 stream, whose reads skip botocore's
    length check (a dropped connection reads as a short object) and raise
    urllib3's errors, which no table knows."""

    def __init__(self, body: StreamingBody, error: Callable[[Exception], Exception]):
        self._body = body
        self._error = error

    def read(self, size: int | None = -1) -> bytes:
        try:
            data: bytes = self._body.read(None if size is None or size < 0 else size)
            return data
        except Exception as e:  # noqa: BLE001 - mapped to user errors
            raise self._error(e) from None

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
