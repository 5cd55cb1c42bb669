"""Sizes as users write them (`10G`, `512M`, `1GiB`, `1073741824`)."""

from __future__ import annotations

import re

from app.errors import InvalidInput

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from a size; binary units, as Convoy and Docker users expect."""
    match = _SIZE.match(text or "")
    if not match:
        raise InvalidInput(
            f"size {text!r} is not a size: give a number with an optional unit K, M, G or T, "
            "for example 10G or 512M"
        )
    number, unit = match.groups()
    size = int(float(number) * _UNITS[unit.lower()])
    if size <= 0:
        raise InvalidInput(f"size {text!r} must be larger than zero")
    return size


def format_size(size: int | None) -> str:
    """The shortest exact binary-unit spelling, e.g. 1073741824 -> '1G'."""
    if size is None:
        return "-"
    for unit in ("P", "T", "G", "M", "K"):
        factor = _UNITS[unit.lower()]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B" if size < 1024 else f"{size / (1 << 20):.1f}M"
