"""thin-provisioning-tools on a live pool's metadata snapshot: mapped ranges, changes, device ids.

`thin_dump -m --dev-id N` lists where thin device N holds data, `thin_delta -m`
what differs between two thin devices (a snapshot and a later one), `thin_ls -m`
which device ids the pool holds. All read the metadata snapshot the caller
reserved (`reserve_metadata_snap`), never the live metadata.

Their output can be large (one line per mapping run); it is read as a
stream, line by line, merged into ranges as it comes, with a time limit and
a limit on the ranges kept: past it the answer is None ("unknown"), which
the backup reads as "read it all".
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from collections.abc import Generator, Iterable

from app.errors import Unavailable
from app.fs import command, sparse

command.PACKAGES.update({tool: "thin-provisioning-tools" for tool in ("thin_dump", "thin_delta", "thin_ls", "thin_check")})
TIMEOUT = 600.0
MAX_RANGES = 1_000_000  # ~50 MiB of ranges in memory at most; beyond it, a full read
THIN_MAGIC = 27022010  # the thin pool metadata superblock's magic, at byte 32
Ranges = list[tuple[int, int]]


class TooMany(Exception):
    """More ranges than MAX_RANGES."""


def _lines(argv: list[str], subject: str, timeout: float) -> Generator[str, None, None]:
    """The tool's stdout, line by line; killed past `timeout`; a failure raises Unavailable."""
    tool = os.path.basename(argv[0])
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1 << 16
        )
    except FileNotFoundError:
        raise Unavailable(f"{tool} is not installed (needed for {subject}): install thin-provisioning-tools") from None
    timed_out: list[bool] = []

    def stop() -> None:
        timed_out.append(True)
        proc.kill()

    timer = threading.Timer(timeout, stop)
    timer.start()
    finished = False
    try:
        yield from proc.stdout or ()
        finished = True
    finally:
        if not finished:
            proc.kill()
        timer.cancel()
        stderr = proc.stderr.read() if proc.stderr else ""
        code = proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    if code != 0:
        said = f"stopped after {timeout:g} s" if timed_out else command.first_line(stderr) or f"exit status {code}"
        raise Unavailable(f"{tool} on {subject} failed: {said}; check the pool with thin_check on a metadata copy")


class RangeBuilder:
    """Sorted [start, end) ranges merged as they come; TooMany past the limit."""

    def __init__(self, limit: int = MAX_RANGES):
        self.ranges: Ranges = []
        self.limit = limit

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        if self.ranges and start <= self.ranges[-1][1]:
            last_start, last_end = self.ranges[-1]
            if start >= last_start:
                self.ranges[-1] = (last_start, max(last_end, end))
                return
        self.ranges.append((start, end))
        if len(self.ranges) > self.limit:
            raise TooMany


def _attrs(line: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', line))


def parse_dump_mappings(lines: Iterable[str], limit: int = MAX_RANGES) -> Ranges:
    """thin_dump's <range_mapping origin_begin length/> and <single_mapping origin_block/>, in thin blocks."""
    ranges = RangeBuilder(limit)
    for line in lines:
        text = line.strip()
        if text.startswith("<range_mapping"):
            attrs = _attrs(text)
            begin = int(attrs["origin_begin"])
            ranges.add(begin, begin + int(attrs["length"]))
        elif text.startswith("<single_mapping"):
            begin = int(_attrs(text)["origin_block"])
            ranges.add(begin, begin + 1)
    return sparse.merged(ranges.ranges)


# thin_delta's verdicts: what differs between the left (earlier) and the right (later) device
CHANGED = ("different", "right_only", "left_only")  # left_only: unmapped since (reads as zeros now)


def parse_delta(lines: Iterable[str], limit: int = MAX_RANGES) -> Ranges:
    """thin_delta's <different|right_only|left_only begin length/> (not <same>), in thin blocks."""
    ranges = RangeBuilder(limit)
    for line in lines:
        text = line.strip()
        tag = text[1:].split(" ", 1)[0] if text.startswith("<") else ""
        if tag in CHANGED:
            attrs = _attrs(text)
            begin = int(attrs["begin"])
            ranges.add(begin, begin + int(attrs["length"]))
    return sparse.merged(ranges.ranges)


def parse_thin_ls(lines: Iterable[str]) -> set[int]:
    """thin_ls --no-headers -o DEV: one device id a line."""
    return {int(line.split()[0]) for line in lines if line.strip() and line.split()[0].isdigit()}


def mapped_blocks(metadata_dev: str, device_id: int, timeout: float = TIMEOUT) -> Ranges | None:
    """The thin blocks device `device_id` maps, from the held metadata snapshot; None when too many to keep."""
    argv = ["thin_dump", "-m", "--dev-id", str(device_id), metadata_dev]
    try:
        with contextlib.closing(_lines(argv, f"thin device {device_id}", timeout)) as lines:
            return parse_dump_mappings(lines)
    except TooMany:
        return None


def changed_blocks(metadata_dev: str, earlier: int, later: int, timeout: float = TIMEOUT) -> Ranges | None:
    """The thin blocks that differ between devices `earlier` and `later`; None when too many to keep."""
    argv = ["thin_delta", "-m", "--snap1", str(earlier), "--snap2", str(later), metadata_dev]
    try:
        with contextlib.closing(_lines(argv, f"thin devices {earlier} and {later}", timeout)) as lines:
            return parse_delta(lines)
    except TooMany:
        return None


def device_ids(metadata_dev: str, timeout: float = 120.0) -> set[int]:
    """Every thin device id the pool holds, from the held metadata snapshot."""
    argv = ["thin_ls", "-m", "--no-headers", "-o", "DEV", metadata_dev]
    with contextlib.closing(_lines(argv, f"the thin pool on {metadata_dev}", timeout)) as lines:
        return parse_thin_ls(lines)


def metadata_kind(path: str) -> str:
    """What the start of a metadata device holds: "blank", "thin" (a pool's superblock) or "other"."""
    with open(path, "rb") as device:
        head = device.read(4096)
    if not head.strip(b"\0"):
        return "blank"
    if len(head) >= 40 and int.from_bytes(head[32:40], "little") == THIN_MAGIC:
        return "thin"
    return "other"


def to_bytes(blocks: Ranges | None, block_bytes: int, size: int) -> Ranges | None:
    """Thin-block ranges as byte ranges, clipped to the device's size."""
    if blocks is None:
        return None
    return [(start * block_bytes, min(end * block_bytes, size)) for start, end in blocks if start * block_bytes < size]
