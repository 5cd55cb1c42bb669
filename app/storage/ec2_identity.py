"""Who this host is on EC2: its instance id, region and AZ, from the instance metadata service (IMDSv2).

Token first (`PUT /latest/api/token`), then the metadata with the token, as
IMDSv2 requires. The endpoint is botocore's setting,
`AWS_EC2_METADATA_SERVICE_ENDPOINT` (default http://169.254.169.254/), so a
test's IMDS emulator serves the same code. Short deadlines: a host that is
not on EC2 must learn it at start, in a second or two, not hang.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from app.errors import Unavailable

DEFAULT_ENDPOINT = "http://169.254.169.254/"
TIMEOUT = 2.0  # seconds per request
TOKEN_TTL = "300"  # noqa: S105 - seconds an IMDSv2 token lives, not a secret


@dataclass(frozen=True)
class Instance:
    instance_id: str
    region: str
    availability_zone: str


def metadata_endpoint() -> str:
    return (os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/") + "/"


def this_instance() -> Instance:
    """This host's identity, or Unavailable saying it is not an EC2 instance and what to set instead."""
    base = metadata_endpoint()
    try:
        token = _request(base + "latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL})
        headers = {"X-aws-ec2-metadata-token": token}
        instance_id = _request(base + "latest/meta-data/instance-id", headers=headers)
        zone = _request(base + "latest/meta-data/placement/availability-zone", headers=headers)
        try:
            region = _request(base + "latest/meta-data/placement/region", headers=headers)
        except urllib.error.HTTPError:
            region = zone[:-1]  # older instances: the AZ is the region and one letter
    except (OSError, urllib.error.URLError) as err:
        raise Unavailable(
            f"this host does not look like an EC2 instance: the instance metadata service at {base} did not answer "
            f"({getattr(err, 'reason', err)}); the ebs back-end runs on EC2 instances (with IMDSv2 reachable "
            "from the plugin: hop limit 2 for containers)"
        ) from None
    return Instance(instance_id.strip(), region.strip(), zone.strip())


def _request(url: str, *, method: str = "GET", headers: dict[str, str]) -> str:
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310 - the IMDS endpoint, http by design
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310
        return str(answer.read(4096).decode("utf-8", "replace"))
