"""`KEY=VALUE` items, as the CLI's -o and the daemon's --driver-opts take them."""

from __future__ import annotations

from app.errors import InvalidInput


def parse_key_values(items: list[str], what: str) -> dict[str, str]:
    """Parse `KEY=VALUE` items; the error names the item and the expected form."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"{what} {item!r} is not KEY=VALUE (for example vfs.path=/mnt/nfs)")
        result[key] = value.strip()
    return result
