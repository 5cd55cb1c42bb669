"""Sizes as users write them (`10G`, `512M`, `1GiB`, `1073741824`)."""

from __future__ import annotations

import re
from fractions import Fraction

from app.errors import InvalidInput

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^\s*(\d{1,30}(?:\.\d{1,30})?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
# The catalog keeps sizes as SQLite INTEGER (signed 64 bits) and shared
# records are read back with this cap: anything larger is refused up front,
# before a volume is created.
MAX_SIZE = (1 << 63) - 1


def parse_size(text: str) -> int:
    """Bytes from a size; binary units, as Convoy and Docker users expect."""
    match = _SIZE.fullmatch(text or "") if isinstance(text, str) else None
    if not match:
        shown = text if isinstance(text, str) else type(text).__name__
        raise InvalidInput(
            f"size {shown!r} is not a size: give a number with an optional unit K, M, G, T or P, "
            "for example 10G or 512M"
        )
    number, unit = match.groups()
    size = int(Fraction(number) * _UNITS[unit.lower()])  # exact: no float rounding near the cap
    if size <= 0:
        raise InvalidInput(f"size {text!r} must be larger than zero")
    if size > MAX_SIZE:
        raise InvalidInput(f"size {text!r} is too large: a volume size must be less than 8192P (2^63 bytes)")
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
