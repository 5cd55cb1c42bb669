"""`backup list` as it was before the per-volume index: every manifest read, one after another.

The reference the tests compare the indexed listing with, and the benchmark times it against.
"""

from __future__ import annotations

from app.backup import engine, manifest
from app.backup.objectstore import open_store
from app.backup.urls import parse_store_url
from app.errors import ConvoyError


def list_from_manifests(dest: str, s3_endpoint: str | None = None) -> list[dict]:
    store_url = parse_store_url(dest)
    rows = []
    with open_store(store_url, s3_endpoint=s3_endpoint, create=False) as store:
        for vol, name in manifest.list_backup_names(store):
            try:
                doc = manifest.summary(manifest.read_backup(store, vol, name))
            except ConvoyError as e:
                doc = {"name": name, "volume": vol, "error": str(e)}
            rows.append({"url": engine.backup_url(store_url, vol, name), **doc})
    rows.sort(key=lambda r: (r.get("volume") or "", str(r.get("created_at") or ""), r.get("name") or ""))
    return rows
