"""How an S3 failure becomes one of our errors: one table, one function.

Every call the S3 store makes goes through `translate`, so a given failure
reads the same whichever operation met it. Two kinds of failure:

- the endpoint answered with an error document: botocore's `ClientError`,
  whose `Code` (or, for a HEAD, only the HTTP status) is looked up in
  `CLIENT_CODES`;
- no usable answer (no credentials, no connection, a time-out, a connection
  dropped mid-body): botocore's own exceptions, looked up by class in
  `TRANSPORT`.

Anything else is not an S3 failure and is returned unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.errors import Conflict, ConvoyError, InvalidInput, NotFound, Unavailable

if TYPE_CHECKING:
    from botocore.exceptions import ClientError


class MissingObject(NotFound):
    """The key of a call does not exist (its bucket does): an answer, not a failure, for a HEAD."""


@dataclass(frozen=True)
class S3Call:
    """What a failed call was doing, for its message."""

    url: str  # the store as the user named it, with its endpoint
    bucket: str
    endpoint: str | None
    what: str  # "read blocks/ab/...", "open the bucket"
    key: str | None = None  # None: a call about the bucket itself

    @property
    def where(self) -> str:
        return self.endpoint or "AWS S3"


# Messages; fields are S3Call's, plus {code} and {detail} (the first line of botocore's message).
_BUCKET_MISSING = "bucket {bucket!r} does not exist at {url}: create it first"
_KEY_MISSING = "{key} is missing from {url}"
_REFUSED = "S3 refused to {what} in {url} ({code}): check the credentials and the bucket's permissions"
_BUSY = "S3 could not {what} in {url} ({code}: the service is busy or failing); retry later"
_CLOCK = "S3 refused to {what} in {url} ({code}): this host's clock is wrong; set it right (NTP) and retry"
_REGION = (
    "bucket {bucket!r} is not in the region the request went to ({code}): write its region in the URL "
    "(s3://{bucket}@REGION/...)"
)
_BUCKET_NAME = "{bucket!r} is not a valid S3 bucket name ({code})"
_ARCHIVED = "S3 cannot {what} in {url} ({code}): the object is in an archive storage class; restore it in S3 first"
_FAILED = "S3 failed to {what} in {url}: {code}"

#: a `ClientError`'s code -> (our error, message). A 404 with no code is the
#: key when the call had one, else the bucket: a HEAD's answer has no body.
CLIENT_CODES: dict[str, tuple[type[ConvoyError], str]] = {
    "NoSuchBucket": (NotFound, _BUCKET_MISSING),
    "NoSuchKey": (MissingObject, _KEY_MISSING),
    "AccessDenied": (Unavailable, _REFUSED),
    "403": (Unavailable, _REFUSED),
    "InvalidAccessKeyId": (Unavailable, _REFUSED),
    "SignatureDoesNotMatch": (Unavailable, _REFUSED),
    "ExpiredToken": (Unavailable, _REFUSED),
    "InvalidToken": (Unavailable, _REFUSED),
    "AllAccessDisabled": (Unavailable, _REFUSED),
    "RequestTimeTooSkewed": (Unavailable, _CLOCK),
    "SlowDown": (Unavailable, _BUSY),
    "ServiceUnavailable": (Unavailable, _BUSY),
    "503": (Unavailable, _BUSY),
    "InternalError": (Unavailable, _BUSY),
    "500": (Unavailable, _BUSY),
    "RequestTimeout": (Unavailable, _BUSY),
    "PermanentRedirect": (InvalidInput, _REGION),
    "301": (InvalidInput, _REGION),
    "AuthorizationHeaderMalformed": (InvalidInput, _REGION),
    "InvalidBucketName": (InvalidInput, _BUCKET_NAME),
    "InvalidObjectState": (Conflict, _ARCHIVED),
}
_NOT_FOUND_CODES = ("404", "NotFound")

_NO_CREDENTIALS = (
    "no S3 credentials found for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
    "or configure ~/.aws/credentials or an instance role"
)
_UNREACHABLE = (
    "cannot reach the S3 endpoint {where} while trying to {what}: {detail}; check the endpoint address and the network"
)
_DROPPED = (
    "the S3 endpoint {where} dropped the connection while trying to {what}: {detail}; retry"
)
_NO_REGION = "no region for {url}: write it in the URL (s3://{bucket}@us-east-1/...) or set AWS_DEFAULT_REGION"
_BAD_PARAMETER = "S3 cannot {what} in {url}: {detail}"
_BOTOCORE = "S3 failed to {what} in {url}: {detail}"

#: botocore exception class names -> (our error, message), the first match wins
#: (subclasses before their bases); by name, so botocore is imported only when S3 is used.
TRANSPORT: tuple[tuple[tuple[str, ...], type[ConvoyError], str], ...] = (
    (("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"), Unavailable, _NO_CREDENTIALS),
    (("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"), Unavailable, _UNREACHABLE),
    (("ConnectionClosedError", "ResponseStreamingError", "IncompleteReadError"), Unavailable, _DROPPED),
    (("NoRegionError",), InvalidInput, _NO_REGION),
    (("ParamValidationError",), InvalidInput, _BAD_PARAMETER),
    (("BotoCoreError",), Unavailable, _BOTOCORE),
)


def _detail(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


@functools.cache
def _transport_classes() -> tuple[tuple[tuple[type[BaseException], ...], type[ConvoyError], str], ...]:
    import botocore.exceptions as bex

    return tuple((tuple(getattr(bex, name) for name in names), error, text) for names, error, text in TRANSPORT)


def client_error_code(exc: ClientError) -> str:
    """The error code S3 answered with (for a HEAD, which has no body, its HTTP status)."""
    code = exc.response.get("Error", {}).get("Code")
    if code:
        return str(code)
    return str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _from_client_error(exc: ClientError, call: S3Call) -> ConvoyError:
    code = client_error_code(exc)
    error: type[ConvoyError]
    if code in _NOT_FOUND_CODES:
        error, text = (MissingObject, _KEY_MISSING) if call.key is not None else (NotFound, _BUCKET_MISSING)
    else:
        error, text = CLIENT_CODES.get(code, (Unavailable, _FAILED))
    return error(_format(text, call, code=code or _detail(exc), detail=_detail(exc)))


def _format(text: str, call: S3Call, **extra: str) -> str:
    return text.format(
        url=call.url, bucket=call.bucket, what=call.what, key=call.key, where=call.where, **extra
    )


def translate(exc: Exception, call: S3Call) -> Exception:
    """Our error for `exc`, met while doing `call`; `exc` itself when it is not an S3 failure."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return _from_client_error(exc, call)
    for classes, error, text in _transport_classes():
        if isinstance(exc, classes):
            return error(_format(text, call, code="", detail=_detail(exc)))
    return exc
