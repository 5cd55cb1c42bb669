"""DO's JSON: the error shape, pagination (links.pages, meta.total) and the objects (volume, snapshot, action,
droplet, region), field for field as in DO's API reference."""

from __future__ import annotations

import urllib.parse
from typing import Any

from tests.dolab.model import Action, Droplet, Snapshot, Volume, iso

# DO's error ids by status, and the messages its reference shows for the generic ones
ERROR_IDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "unprocessable_entity",
    429: "too_many_requests",
    500: "server_error",
    503: "service_unavailable",
}
NOT_FOUND = "The resource you requested could not be found."
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 200

REGIONS = {
    "nyc1": "New York 1",
    "nyc3": "New York 3",
    "sfo2": "San Francisco 2",
    "sfo3": "San Francisco 3",
    "ams3": "Amsterdam 3",
    "sgp1": "Singapore 1",
    "lon1": "London 1",
    "fra1": "Frankfurt 1",
    "tor1": "Toronto 1",
    "blr1": "Bangalore 1",
    "syd1": "Sydney 1",
}
SIZES = ["s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb", "s-2vcpu-4gb", "s-4vcpu-8gb"]


class DoError(Exception):
    """An API error: HTTP status, DO's id for it, and the message."""

    def __init__(self, status: int, message: str, error_id: str | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.id = error_id or ERROR_IDS.get(status, "error")


def not_found() -> DoError:
    return DoError(404, NOT_FOUND)


def region(slug: str) -> dict[str, Any]:
    return {
        "name": REGIONS.get(slug, slug),
        "slug": slug,
        "sizes": SIZES,
        "features": ["private_networking", "backups", "ipv6", "metadata", "storage"],
        "available": True,
    }


def volume(v: Volume) -> dict[str, Any]:
    return {
        "id": v.id,
        "region": region(v.region),
        "droplet_ids": list(v.droplet_ids),
        "name": v.name,
        "description": v.description,
        "size_gigabytes": v.size,
        "created_at": iso(v.created_at),
        "filesystem_type": v.filesystem_type,
        "filesystem_label": v.filesystem_label,
        "tags": list(v.tags),
    }


def snapshot(s: Snapshot) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "created_at": iso(s.created_at),
        "regions": [s.region],
        "resource_id": s.volume_id,
        "resource_type": "volume",
        "min_disk_size": s.min_disk_size,
        "size_gigabytes": s.size_gigabytes,
        "tags": list(s.tags),
    }


def action(a: Action) -> dict[str, Any]:
    # DO's volume actions carry no resource id (its examples show null): the volume is the URL's
    return {
        "id": a.id,
        "status": a.status,
        "type": a.type,
        "started_at": iso(a.started_at),
        "completed_at": iso(a.completed_at),
        "resource_id": None,
        "resource_type": "volume",
        "region": region(a.region),
        "region_slug": a.region,
    }


def droplet(d: Droplet, volume_ids: list[str], created_at: float) -> dict[str, Any]:
    return {
        "id": d.id,
        "name": f"dolab-{d.id}",
        "memory": 1024,
        "vcpus": 1,
        "disk": 25,
        "locked": False,
        "status": d.status,
        "kernel": None,
        "created_at": iso(created_at),
        "features": ["private_networking"],
        "backup_ids": [],
        "next_backup_window": None,
        "snapshot_ids": [],
        "image": {"id": 1, "name": "dolab", "distribution": "Debian", "slug": "debian-12-x64", "public": True},
        "volume_ids": volume_ids,
        "size": {"slug": "s-1vcpu-1gb", "memory": 1024, "vcpus": 1, "disk": 25},
        "size_slug": "s-1vcpu-1gb",
        "networks": {
            "v4": [{"ip_address": "127.0.0.1", "netmask": "255.0.0.0", "gateway": "127.0.0.1", "type": "private"}],
            "v6": [],
        },
        "region": region(d.region),
        "tags": [],
        "vpc_uuid": "00000000-0000-4000-8000-000000000001",
    }


def page(items: list[Any], query: dict[str, str], base_url: str) -> tuple[list[Any], dict[str, Any]]:
    """One page of `items` as `page`/`per_page` ask (default 20, at most 200), and the `links` + `meta` around it.
    The links carry the request's other query parameters, so following `next` keeps the filters."""
    try:
        number = max(1, int(query.get("page", "1")))
        per_page = min(MAX_PER_PAGE, max(1, int(query.get("per_page", str(DEFAULT_PER_PAGE)))))
    except ValueError:
        raise DoError(400, "page and per_page must be positive integers") from None
    last = max(1, -(-len(items) // per_page))

    def url(n: int) -> str:
        return base_url + "?" + urllib.parse.urlencode({**query, "page": str(n), "per_page": str(per_page)})

    pages: dict[str, str] = {}
    if number > 1:
        pages["first"], pages["prev"] = url(1), url(min(number - 1, last))
    if number < last:
        pages["next"], pages["last"] = url(number + 1), url(last)
    links: dict[str, Any] = {"pages": pages} if pages else {}
    return items[(number - 1) * per_page : number * per_page], {"links": links, "meta": {"total": len(items)}}
