"""What the digitalocean back-end accepts, checked before any API call.

Volume options (`docker volume create -o ...`) and daemon options
(`--driver-opts do.*`); an error names the option, the value and what is
valid. Sizes: DigitalOcean sizes volumes in whole GiB, 1 to 16384; a size in
between is rounded up (a user asking for 1.5G gets a volume that holds
1.5G: 2G) and the volume shows its real size in `docker volume inspect`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from app.errors import InvalidInput
from app.storage.do_names import check_tag, is_valid_name
from app.storage.option_values import GIB, parse_bool, seconds_option
from app.units import format_size, parse_size

MIN_GIB = 1
MAX_GIB = 16384  # 16 TiB, DigitalOcean's largest volume
DEFAULT_SIZE = 10 * GIB
DEFAULT_ENDPOINT = "https://api.digitalocean.com"
ATTACH_TIMEOUT = 45.0  # seconds: Docker gives a Mount 2 minutes, and a mount may also make a file system
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
REGION = re.compile(r"^[a-z]{3}[0-9]$")  # nyc3, fra1, sgp1...

VOLUME_OPTIONS = {
    "size": f"size, rounded up to whole GiB (1G to {MAX_GIB}G; default do.default_size)",
    "id": "adopt this existing DigitalOcean volume (its id, a UUID) instead of creating one",
    "do_name": "adopt the existing DigitalOcean volume of this name in this region",
    "snapshot": "create the volume from this DigitalOcean volume snapshot (its id, a UUID)",
    "description": "text shown with the volume in DigitalOcean's control panel",
    "tags": "DigitalOcean tags for the volume, comma-separated (letters, digits, ':', '-', '_')",
    "force_detach": "true/false: may detach it from a powered-off droplet that holds it",
}

DAEMON_OPTIONS = {
    "do.region": "region of new volumes (default: this droplet's, from its metadata)",
    "do.droplet_id": "this droplet's id (default: from its metadata)",
    "do.default_size": "size of a volume created without one (default 10G)",
    "do.api_endpoint": f"API root URL (default {DEFAULT_ENDPOINT}; DO-compatible clouds, tests)",
    "do.token_file": "file holding the API token (default: the DO_TOKEN environment variable)",
    "do.force_detach": "true/false: detach volumes held by a powered-off droplet (default false)",
    "do.dev_root": "where the kernel's devices appear (default /dev)",
    "do.attach_timeout": f"seconds an attach may take before a mount gives up (default {ATTACH_TIMEOUT:.0f})",
}


def size_in_gib(size: int, what: str = "size") -> int:
    """Whole GiB, rounded up; refused outside what DigitalOcean makes."""
    gib = max(MIN_GIB, -(-size // GIB))
    if gib > MAX_GIB:
        raise InvalidInput(f"{what} {format_size(size)} is larger than a DigitalOcean volume can be: give at most {MAX_GIB}G")
    return gib


@dataclass(frozen=True)
class DaemonOptions:
    region: str | None
    droplet_id: int | None
    default_size_gib: int
    api_endpoint: str
    token_file: Path | None
    force_detach: bool
    dev_root: Path
    attach_timeout: float


def daemon_options(options: dict[str, str]) -> DaemonOptions:
    """The daemon's `do.*` options, or InvalidInput naming the wrong one (the daemon does not start)."""
    region = options.get("do.region") or None
    if region is not None and not REGION.fullmatch(region):
        raise InvalidInput(f"do.region={region!r} is not a DigitalOcean region slug: use one like nyc3, fra1 or sgp1")
    droplet = options.get("do.droplet_id") or None
    if droplet is not None and not droplet.isdigit():
        raise InvalidInput(f"do.droplet_id={droplet!r} is not a droplet id: give its number (doctl compute droplet list)")
    endpoint = (options.get("do.api_endpoint") or DEFAULT_ENDPOINT).rstrip("/")
    parsed = urlparse(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInput(f"do.api_endpoint={endpoint!r} is not an http(s) URL: give one like {DEFAULT_ENDPOINT}")
    default_size = parse_size(options["do.default_size"]) if options.get("do.default_size") else DEFAULT_SIZE
    token_file = options.get("do.token_file") or None
    return DaemonOptions(
        region=region,
        droplet_id=int(droplet) if droplet else None,
        default_size_gib=size_in_gib(default_size, "do.default_size"),
        api_endpoint=endpoint,
        token_file=Path(token_file) if token_file else None,
        force_detach=parse_bool(options.get("do.force_detach", "false"), "do.force_detach"),
        dev_root=Path(options.get("do.dev_root") or "/dev"),
        attach_timeout=seconds_option(options.get("do.attach_timeout"), ATTACH_TIMEOUT, "do.attach_timeout"),
    )


@dataclass(frozen=True)
class VolumeRequest:
    """A validated create: a new volume (maybe from a snapshot), or an existing one to adopt."""

    size_gib: int
    adopt_id: str | None = None
    adopt_name: str | None = None
    snapshot_id: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    force_detach: bool | None = None

    @property
    def adopting(self) -> bool:
        return bool(self.adopt_id or self.adopt_name)


def volume_request(options: dict[str, str], size: int | None, default_size_gib: int) -> VolumeRequest:
    """What a create's options ask for, or InvalidInput naming what is wrong."""
    adopt_id = options.get("id") or None
    adopt_name = options.get("do_name") or None
    snapshot = options.get("snapshot") or None
    if adopt_id and adopt_name:
        raise InvalidInput("give id or do_name, not both: each names the DigitalOcean volume to adopt")
    if (adopt_id or adopt_name) and snapshot:
        raise InvalidInput("snapshot makes a new volume and id/do_name adopt an existing one: give one of them")
    if adopt_id is not None and not UUID.fullmatch(adopt_id):
        raise InvalidInput(f"id={adopt_id!r} is not a DigitalOcean volume id: give its UUID (doctl compute volume list)")
    if adopt_name is not None and not is_valid_name(adopt_name):
        raise InvalidInput(
            f"do_name={adopt_name!r} is not a DigitalOcean volume name: lowercase letters, digits and '-', "
            "at most 64, starting with a letter"
        )
    if snapshot is not None and not UUID.fullmatch(snapshot):
        raise InvalidInput(
            f"snapshot={snapshot!r} is not a DigitalOcean snapshot id: "
            "give its UUID (doctl compute snapshot list --resource volume)"
        )
    tags = [tag.strip() for tag in (options.get("tags") or "").split(",") if tag.strip()]
    for tag in tags:
        check_tag(tag)
    force_detach = parse_bool(options["force_detach"], "force_detach") if "force_detach" in options else None
    return VolumeRequest(
        size_gib=size_in_gib(size) if size is not None else default_size_gib,
        adopt_id=adopt_id,
        adopt_name=adopt_name,
        snapshot_id=snapshot,
        description=options.get("description") or None,
        tags=tags,
        force_detach=force_detach,
    )
