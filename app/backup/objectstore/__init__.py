"""Backup destinations behind one small interface (see `base.ObjectStore`)."""

from __future__ import annotations

from ..urls import StoreURL, parse_store_url
from .base import ObjectStore
from .vfs import VfsStore


def open_store(url: str | StoreURL, *, s3_endpoint: str | None = None, create: bool = True) -> ObjectStore:
    """Open the destination a store URL names.

    `create`: for vfs://, make the directory when it does not exist (backup);
    pass False for read-only uses (restore, list) so a typo is reported.
    """
    parsed = parse_store_url(url) if isinstance(url, str) else url
    if parsed.scheme == "vfs":
        return VfsStore(parsed.path, create=create)
    from .s3 import S3Store

    return S3Store(parsed, endpoint=s3_endpoint)


__all__ = ["ObjectStore", "VfsStore", "open_store"]
