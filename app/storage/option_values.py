"""Values of back-end options that every cloud back-end parses the same way.

Booleans (`force_detach=true`), seconds bounded by Docker's limits
(`*.attach_timeout`) and whole GiB (EBS and DigitalOcean size volumes in
GiB). One spelling of each error, whichever back-end reads the option.
"""

from __future__ import annotations

from app.errors import InvalidInput

GIB = 1 << 30
DOCKER_MOUNT_SECONDS = 120  # Docker gives a plugin's Mount (and Create) two minutes


def parse_bool(value: str, option: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise InvalidInput(f"{option}={value!r} is not a boolean: use true or false")


def seconds_option(value: str | None, default: float, option: str) -> float:
    """A wait that must fit in one of Docker's calls: 1 to 110 seconds (room left for the rest of a mount)."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidInput(f"{option}={value!r} is not a number of seconds") from None
    most = DOCKER_MOUNT_SECONDS - 10
    if not 1 <= seconds <= most:
        raise InvalidInput(f"{option}={value} must be 1 to {most} seconds: Docker gives a mount {DOCKER_MOUNT_SECONDS}")
    return seconds
