"""Store and backup URLs, in Convoy's spelling.

A store (backup destination) URL is one of

    vfs:///absolute/path              a local directory or an NFS mount
    s3://bucket@region/prefix         AWS or any S3-compatible endpoint
    s3://bucket/prefix                region from the standard AWS chain

A backup URL is a store URL with a query naming one backup:

    <store>?backup=NAME&volume=VOL

Convoy printed the `&` as the six characters `\\u0026` (and read `u0026`
too); both are accepted on input, and a plain `&` is printed.

Backup and volume names follow `app.names.check_name`, the one name rule
(re-exported here for the engine).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

from app.errors import InvalidInput
from app.names import check_name

# S3 bucket names (the relaxed legacy rule that MinIO and Ceph accept too).
BUCKET_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,254}$")
REGION_RE = re.compile(r"^[a-z0-9-]+$")

EXAMPLES = "vfs:///var/lib/convoy-backups or s3://bucket@us-east-1/prefix"


@dataclass(frozen=True)
class StoreURL:
    """Where a store lives."""

    scheme: str  # "vfs" or "s3"
    path: str = ""  # vfs: absolute directory
    bucket: str = ""  # s3
    region: str | None = None  # s3; None means "from the AWS chain"
    prefix: str = ""  # s3: key prefix without leading/trailing "/"

    def __str__(self) -> str:
        if self.scheme == "vfs":
            return "vfs://" + quote(self.path, safe="/")
        where = self.bucket + (f"@{self.region}" if self.region else "")
        return f"s3://{where}/{self.prefix}" if self.prefix else f"s3://{where}"


@dataclass(frozen=True)
class BackupURL:
    """One backup in one store."""

    store: StoreURL
    backup: str
    volume: str

    def __str__(self) -> str:
        return self.text(str(self.store), self.backup, self.volume)

    @staticmethod
    def text(store: str, backup: str, volume: str) -> str:
        """The URL of a backup in the store whose URL is `store` (a listing formats the store once)."""
        return f"{store}?backup={backup}&volume={volume}"


def _normalise(text: str) -> str:
    text = text.strip()
    # Convoy's JSON-escaped ampersand, with or without the backslash.
    return text.replace("\\u0026", "&").replace("u0026", "&")


def parse_store_url(text: str) -> StoreURL:
    """Parse a destination URL; raise InvalidInput saying what is wrong."""
    if not text:
        raise InvalidInput(f"a backup destination is required, for example {EXAMPLES}")
    raw = _normalise(text)
    parts = urlsplit(raw)
    if parts.query or parts.fragment:
        raise InvalidInput(
            f"destination {text!r} must not have a '?...' part; "
            f"give a store URL such as {EXAMPLES}"
        )
    if parts.scheme == "vfs":
        if parts.netloc:
            raise InvalidInput(
                f"destination {text!r}: a vfs URL has three slashes and an absolute "
                "path, for example vfs:///var/lib/convoy-backups"
            )
        path = parts.path
        if not path.startswith("/") or path == "/":
            raise InvalidInput(
                f"destination {text!r}: a vfs URL needs an absolute directory, "
                "for example vfs:///var/lib/convoy-backups"
            )
        if any(p == ".." for p in path.split("/")):
            raise InvalidInput(f"destination {text!r}: '..' is not allowed in the path")
        return StoreURL(scheme="vfs", path=path.rstrip("/") or "/")
    if parts.scheme == "s3":
        netloc = parts.netloc
        if not netloc:
            raise InvalidInput(
                f"destination {text!r}: an s3 URL names a bucket, for example "
                "s3://bucket@us-east-1/prefix"
            )
        bucket, _, region = netloc.partition("@")
        if not BUCKET_RE.fullmatch(bucket):
            raise InvalidInput(
                f"destination {text!r}: {bucket!r} is not a valid S3 bucket name "
                "(3 to 255 letters, digits, '.', '_' or '-')"
            )
        if region and not REGION_RE.fullmatch(region):
            raise InvalidInput(
                f"destination {text!r}: {region!r} is not a valid region name "
                "(for example us-east-1)"
            )
        prefix = parts.path.strip("/")
        if any(p in ("..", ".") for p in prefix.split("/") if prefix):
            raise InvalidInput(f"destination {text!r}: '.' and '..' are not allowed in the prefix")
        return StoreURL(scheme="s3", bucket=bucket, region=region or None, prefix=prefix)
    raise InvalidInput(
        f"destination {text!r} is not a store URL: use {EXAMPLES}"
    )


def parse_backup_url(text: str) -> BackupURL:
    """Parse `<store>?backup=NAME&volume=VOL` (Convoy's `\\u0026` accepted)."""
    if not text:
        raise InvalidInput("a backup URL is required, for example vfs:///path?backup=NAME&volume=VOL")
    raw = _normalise(text)
    base, sep, query = raw.partition("?")
    if not sep:
        raise InvalidInput(
            f"backup URL {text!r} does not name a backup: it must end in "
            "?backup=NAME&volume=VOL (as printed by `convoy backup create`)"
        )
    store = parse_store_url(base)
    fields: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        fields[key] = value
    missing = [k for k in ("backup", "volume") if not fields.get(k)]
    if missing:
        raise InvalidInput(
            f"backup URL {text!r} lacks {' and '.join(missing)}: it must end in "
            "?backup=NAME&volume=VOL (as printed by `convoy backup create`)"
        )
    unknown = sorted(set(fields) - {"backup", "volume"})
    if unknown:
        raise InvalidInput(
            f"backup URL {text!r} has unknown field(s) {', '.join(unknown)}; "
            "only backup and volume are allowed"
        )
    return BackupURL(
        store=store,
        backup=check_name("backup", fields["backup"]),
        volume=check_name("volume", fields["volume"]),
    )
