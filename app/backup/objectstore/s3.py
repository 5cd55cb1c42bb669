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

import os
from collections.abc import Callable, Iterator
from typing import BinaryIO, Self

from app.errors import InvalidInput, NotFound, Unavailable

from ..limits import check_size
from ..urls import StoreURL
from .base import ObjectStore

CONNECTIONS = 16
CONNECT_TIMEOUT = 5  # seconds to open a connection
READ_TIMEOUT = 30  # seconds of silence on an open connection (per read, not per object)
ATTEMPTS = 4  # in all, the first one included; botocore's "standard" retry mode


def _attempts() -> int:
    """ATTEMPTS, or AWS_MAX_ATTEMPTS when set (botocore ignores it once a Config names retries)."""
    value = os.environ.get("AWS_MAX_ATTEMPTS", "")
    return int(value) if value.isdigit() and int(value) > 0 else ATTEMPTS


def _describe(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


class S3Store(ObjectStore):
    parallelism = 12  # requests in flight hide the round trips

    def __init__(self, url: StoreURL, endpoint: str | None = None, *, check: bool = True):
        import boto3
        import botocore.config
        import botocore.exceptions as bex

        self._bex = bex
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
        region = url.region
        session = boto3.session.Session()
        if not region and endpoint:
            region = session.region_name or "us-east-1"
        config = botocore.config.Config(
            retries={"total_max_attempts": _attempts(), "mode": "standard"},
            max_pool_connections=CONNECTIONS,
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            s3={"addressing_style": "path"} if endpoint else {},
        )
        try:
            self.client = session.client("s3", region_name=region, endpoint_url=endpoint, config=config)
        except bex.NoRegionError:
            raise InvalidInput(
                f"no region for {url}: write it in the URL (s3://{url.bucket}@us-east-1/...) "
                "or set AWS_DEFAULT_REGION"
            ) from None
        if check:
            self._check_bucket()

    # -- errors ---------------------------------------------------------
    def _error(self, exc: Exception, what: str) -> Exception:
        bex = self._bex
        if isinstance(exc, bex.NoCredentialsError):
            return Unavailable(
                f"no S3 credentials found for {self.url}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or configure ~/.aws/credentials or an instance role"
            )
        if isinstance(exc, (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError)):
            where = self.endpoint or "AWS S3"
            return Unavailable(
                f"cannot reach the S3 endpoint {where} while trying to {what}: {_describe(exc)}; "
                "check the endpoint address and the network"
            )
        if isinstance(exc, bex.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket",):
                return NotFound(f"bucket {self.bucket!r} does not exist at {self.url}: create it first")
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFound(f"{what}: not found in {self.url}")
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return Unavailable(
                    f"S3 refused to {what} in {self.url} ({code}): check the credentials "
                    "and the bucket's permissions"
                )
            return Unavailable(f"S3 failed to {what} in {self.url}: {code or _describe(exc)}")
        if isinstance(exc, bex.BotoCoreError):
            return Unavailable(f"S3 failed to {what} in {self.url}: {_describe(exc)}")
        return exc

    def _check_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._bex.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise NotFound(
                    f"bucket {self.bucket!r} does not exist at {self.url}: create it first"
                ) from None
            raise self._error(e, "open the bucket") from None
        except Exception as e:  # noqa: BLE001 - mapped to user errors
            raise self._error(e, "open the bucket") from None

    # -- interface ------------------------------------------------------
    def put(self, key: str, data: bytes | memoryview | list) -> None:
        body = b"".join(data) if isinstance(data, list) else bytes(data)
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=body)
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"write {key}") from None

    def get(self, key: str) -> bytes:
        with self.open(key) as body:
            try:
                return body.read()
            except Exception as e:  # noqa: BLE001
                raise self._error(e, f"read {key}") from None

    def get_at_most(self, key: str, max_size: int, what: str, *, view: bool = False) -> bytes:
        """One GET: its ContentLength is checked before the body is read, and
        the read stops past `max_size` whatever the header said."""
        where = f"{what} {key} in {self.url}"
        response = self._get_object(key)
        with response["Body"] as body:
            check_size(int(response.get("ContentLength") or 0), max_size, where)
            try:
                data = body.read(max_size + 1)
            except Exception as e:  # noqa: BLE001
                raise self._error(e, f"read {key}") from None
        check_size(len(data), max_size, where)
        return data

    def open(self, key: str) -> BinaryIO:
        return _Body(self._get_object(key)["Body"], lambda e: self._error(e, f"read {key}"))  # type: ignore[return-value]

    def _get_object(self, key: str) -> dict:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._bex.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"{key} is missing from {self.url}") from None
            raise self._error(e, f"read {key}") from None
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"read {key}") from None

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._bex.ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error(e, f"check {key}") from None
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"check {key}") from None

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise NotFound(f"{key} is missing from {self.url}")
        return int(head["ContentLength"])

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"][strip:]
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"list {prefix or 'the store'}") from None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except Exception as e:  # noqa: BLE001
            raise self._error(e, f"delete {key}") from None

    def delete_many(self, keys: list[str]) -> None:
        """Delete in batches of 1000 (one request each)."""
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self.prefix + k} for k in keys[i : i + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except Exception as e:  # noqa: BLE001
                raise self._error(e, "delete unused blocks") from None

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass


class _Body:
    """A GET's body whose read failures are the store's errors: a timeout or a
    dropped connection mid-read is Unavailable (retry), not an OSError a
    reader would take for a damaged object, nor a botocore error it does not know."""

    def __init__(self, body, error: Callable[[Exception], Exception]):
        self._body = body
        self._error = error

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._body.read(None if size is None or size < 0 else size)
        except Exception as e:  # noqa: BLE001 - mapped to user errors
            raise self._error(e) from None

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
