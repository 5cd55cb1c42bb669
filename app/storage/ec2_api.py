"""The EC2 calls the EBS back-end makes, with AWS's failures as our errors and every wait bounded.

boto3 with its standard credential chain (an instance role, or AWS_* set
with `docker plugin set`), adaptive retries (throttling backs off) and
time-outs. `endpoint` points it at an EC2-compatible cloud or a test's
emulator; nothing else differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from app.errors import Conflict, ConvoyError, InvalidInput, NotFound, Unavailable

POLL = 0.5  # seconds between looks at a volume or snapshot that is changing state

# EC2 error codes, as the user should read them
_NOT_FOUND = {"InvalidVolume.NotFound", "InvalidSnapshot.NotFound", "InvalidInstanceID.NotFound"}
_CONFLICT = {"IncorrectState", "VolumeInUse", "InvalidAttachment.NotFound", "IncorrectInstanceState"}
_INVALID = {"InvalidParameterValue", "InvalidParameterCombination", "InvalidParameter", "MissingParameter",
            "InvalidZone.NotFound", "InvalidVolume.ZoneMismatch"}
_REFUSED = {"UnauthorizedOperation", "AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "OptInRequired"}


class Ec2:
    def __init__(self, region: str, endpoint: str | None):
        import boto3
        from botocore.config import Config

        self.region = region
        self.endpoint = endpoint
        config = Config(
            retries={"mode": "adaptive", "max_attempts": 8},
            connect_timeout=5,
            read_timeout=30,
            user_agent_extra="convoy-py",
        )
        self._session = boto3.session.Session()
        self._config = config
        self.client = self._session.client("ec2", region_name=region, endpoint_url=endpoint, config=config)
        self._direct: Any = None

    @property
    def direct(self) -> Any:
        """EBS direct APIs' client (which blocks a snapshot holds, which changed); on AWS their own endpoint.

        Unavailable where botocore has no model for them (a trimmed install): callers then read everything."""
        if self._direct is None:
            from botocore.exceptions import UnknownServiceError

            try:
                self._direct = self._session.client(
                    "ebs", region_name=self.region, endpoint_url=self.endpoint, config=self._config
                )
            except UnknownServiceError:
                raise Unavailable("this installation's botocore has no model of the EBS direct APIs") from None
        return self._direct

    @property
    def where(self) -> str:
        return self.endpoint or f"EC2 in {self.region}"

    def call(self, action: str, **params: Any) -> dict[str, Any]:
        """One EC2 call; AWS's answer on success, our error (naming the action and AWS's code) on failure."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            answer: dict[str, Any] = getattr(self.client, action)(**params)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", "Unknown"))
            message = str(err.response.get("Error", {}).get("Message", "")).strip()
            raise _translate(action, code, message, self.where) from None
        except NoCredentialsError:
            raise Unavailable(
                f"no AWS credentials for {action}: give the instance a role (instance profile), or set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (`docker plugin set convoy ...`)"
            ) from None
        except BotoCoreError as err:
            raise Unavailable(f"{self.where} did not answer {action}: {err}; check the network and ebs.endpoint") from None
        return answer

    def block_ranges(self, action: str, block_list: str, **params: Any) -> list[tuple[int, int]]:
        """The byte ranges of the blocks an EBS direct API lists (every page), merged."""
        from botocore.exceptions import BotoCoreError, ClientError

        ranges: list[tuple[int, int]] = []
        while True:
            try:
                page: dict[str, Any] = getattr(self.direct, action)(MaxResults=10000, **params)
            except ClientError as err:
                code = str(err.response.get("Error", {}).get("Code", "Unknown"))
                raise Unavailable(f"EBS direct API {action}: {code}") from None
            except BotoCoreError as err:
                raise Unavailable(f"EBS direct API {action} did not answer: {err}") from None
            size = int(page["BlockSize"])
            for block in page.get(block_list, []):
                start = int(block["BlockIndex"]) * size
                if ranges and ranges[-1][1] == start:
                    ranges[-1] = (ranges[-1][0], start + size)
                else:
                    ranges.append((start, start + size))
            if not page.get("NextToken"):
                return ranges
            params["NextToken"] = page["NextToken"]

    def volume(self, volume_id: str) -> dict[str, Any]:
        volumes = self.call("describe_volumes", VolumeIds=[volume_id])["Volumes"]
        if not volumes:
            raise NotFound(f"EBS volume {volume_id} does not exist in {self.region}")
        return dict(volumes[0])

    def volumes_tagged(self, key: str, value: str | None = None) -> Iterator[dict[str, Any]]:
        filters = [{"Name": f"tag:{key}", "Values": [value]} if value is not None else {"Name": "tag-key", "Values": [key]}]
        params: dict[str, Any] = {"Filters": filters, "MaxResults": 500}
        while True:
            page = self.call("describe_volumes", **params)
            yield from page.get("Volumes", [])
            token = page.get("NextToken")
            if not token:
                return
            params["NextToken"] = token

    def instance(self, instance_id: str) -> dict[str, Any]:
        reservations = self.call("describe_instances", InstanceIds=[instance_id])["Reservations"]
        for reservation in reservations:
            for instance in reservation.get("Instances", []):
                return dict(instance)
        raise NotFound(f"EC2 instance {instance_id} does not exist in {self.region}")

    def wait(self, what: str, look: Callable[[], bool], deadline: float, todo: str) -> None:
        """Poll `look` until it is true; Unavailable naming `what` and `todo` past `deadline` (monotonic)."""
        while not look():
            if time.monotonic() > deadline:
                raise Unavailable(f"{what} did not happen in time; {todo}")
            time.sleep(POLL)


def _translate(action: str, code: str, message: str, where: str) -> ConvoyError:
    said = f"{action}: {code}" + (f" ({message})" if message else "")
    if code in _NOT_FOUND:
        return NotFound(f"{said}")
    if code in _CONFLICT:
        return Conflict(f"{said}")
    if code in _INVALID:
        return InvalidInput(f"{said}; check the volume's options")
    if code in _REFUSED:
        return Unavailable(f"{said}: the credentials may not do this; grant the IAM actions in docs/backends/ebs.md")
    if code in ("RequestLimitExceeded", "Throttling", "ServiceUnavailable", "InternalError", "Unavailable"):
        return Unavailable(f"{said}: {where} is busy or failing; retry later")
    return Unavailable(f"{said} from {where}")


@contextmanager
def host_lock(path: str) -> Iterator[None]:
    """One attach at a time on this host: two picking a device name at once would pick the same."""
    import fcntl
    import os

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
