"""Who this host is on DigitalOcean: its droplet id and region, from the droplet metadata service.

http://169.254.169.254/metadata/v1/id and /metadata/v1/region, plain GETs
without a token (only the droplet itself can reach that address). The
endpoint is `DO_METADATA_ENDPOINT` when set, so a test's emulator serves the
same code. Short deadlines: a host that is not a droplet must learn it at
start, in a second or two, not hang.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from app.errors import Unavailable

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENDPOINT_VARIABLE = "DO_METADATA_ENDPOINT"
TIMEOUT = 2.0  # seconds per request


@dataclass(frozen=True)
class Droplet:
    droplet_id: int
    region: str


def metadata_endpoint() -> str:
    return (os.environ.get(ENDPOINT_VARIABLE) or DEFAULT_ENDPOINT).rstrip("/")


def this_droplet() -> Droplet:
    """This host's droplet, or Unavailable saying it is not a droplet and what to set instead."""
    base = metadata_endpoint()
    try:
        droplet_id = _get(f"{base}/metadata/v1/id").strip()
        region = _get(f"{base}/metadata/v1/region").strip()
    except (OSError, urllib.error.URLError) as err:
        raise Unavailable(
            f"this host does not look like a DigitalOcean droplet: the droplet metadata service at {base} did not "
            f"answer ({getattr(err, 'reason', err)}); the digitalocean back-end runs on droplets (or give "
            "do.droplet_id and do.region)"
        ) from None
    if not droplet_id.isdigit() or not region:
        raise Unavailable(f"the droplet metadata service at {base} answered id {droplet_id!r}, region {region!r}: no droplet")
    return Droplet(int(droplet_id), region)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:  # noqa: S310 - the metadata service, http by design
        return str(answer.read(4096).decode("utf-8", "replace"))
