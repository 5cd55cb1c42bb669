"""EBS direct APIs, as boto3's `ebs` client speaks them (REST-JSON): which blocks a snapshot holds, which changed.

ListSnapshotBlocks (`GET /snapshots/{id}/blocks`) lists the 512 KiB blocks
that hold data; ListChangedBlocks (`GET /snapshots/{second}/changedblocks?
firstSnapshotId=`) the blocks whose bytes differ between two snapshots. The
answers are computed from the snapshots' files, so they are true of the
bytes, whatever wrote them.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from tests.ec2lab.model import Store

BLOCK = 512 * 1024  # EBS direct APIs' block size
MAX_RESULTS = 10000


class DirectError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def handle(store: Store, path: str) -> tuple[int, dict[str, Any]]:
    url = urllib.parse.urlsplit(path)
    query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
    parts = url.path.strip("/").split("/")
    try:
        if len(parts) == 3 and parts[0] == "snapshots" and parts[2] == "blocks":
            return 200, _blocks(store, parts[1], query)
        if len(parts) == 3 and parts[0] == "snapshots" and parts[2] == "changedblocks":
            return 200, _changed(store, parts[1], query)
        raise DirectError(404, "ResourceNotFoundException", f"no EBS direct API at {url.path}")
    except DirectError as err:
        return err.status, {"__type": err.code, "Message": err.message, "message": err.message}


def _snapshot(store: Store, snapshot_id: str) -> tuple[Any, str]:
    with store.lock:
        snapshot = store.state.snapshots.get(snapshot_id)
    if snapshot is None:
        raise DirectError(404, "ResourceNotFoundException", f"The snapshot '{snapshot_id}' does not exist.")
    if snapshot.state != "completed":
        raise DirectError(400, "ValidationException", f"The snapshot '{snapshot_id}' is not completed.")
    return snapshot, str(store.snapshot_file(snapshot_id))


def _data_blocks(path: str) -> set[int]:
    """Blocks of the file that hold data (SEEK_DATA/SEEK_HOLE), never its holes."""
    found: set[int] = set()
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            found.update(range(start // BLOCK, (end - 1) // BLOCK + 1))
            pos = end
    finally:
        os.close(fd)
    return found


def _page(indexes: list[int], query: dict[str, str]) -> tuple[list[int], str | None]:
    start = int(query.get("pageToken") or query.get("startingBlockIndex") or 0)
    limit = min(int(query.get("maxResults") or MAX_RESULTS), MAX_RESULTS)
    remaining = [i for i in indexes if i >= start]
    page = remaining[:limit]
    return page, (str(remaining[limit]) if len(remaining) > limit else None)


def _blocks(store: Store, snapshot_id: str, query: dict[str, str]) -> dict[str, Any]:
    snapshot, path = _snapshot(store, snapshot_id)
    blocks = sorted(_data_blocks(path))
    return _answer("Blocks", blocks, query, snapshot.volume_size, lambda i: {"BlockToken": f"{snapshot_id}-{i}"})


def _changed(store: Store, second_id: str, query: dict[str, str]) -> dict[str, Any]:
    second, second_path = _snapshot(store, second_id)
    first_id = query.get("firstSnapshotId")
    if not first_id:
        changed = sorted(_data_blocks(second_path))
    else:
        first, first_path = _snapshot(store, first_id)
        if first.volume_id != second.volume_id:
            raise DirectError(400, "ValidationException", "The snapshots must be of the same volume lineage.")
        candidates = sorted(_data_blocks(first_path) | _data_blocks(second_path))
        changed = [i for i in candidates if _read(first_path, i) != _read(second_path, i)]
    return _answer(
        "ChangedBlocks",
        changed,
        query,
        second.volume_size,
        lambda i: {"FirstBlockToken": f"{first_id}-{i}", "SecondBlockToken": f"{second_id}-{i}"},
    )


def _answer(
    key: str, indexes: list[int], query: dict[str, str], volume_size: int, tokens: Callable[[int], dict[str, str]]
) -> dict[str, Any]:
    """One page of a block list, as both APIs answer it."""
    page, token = _page(indexes, query)
    answer: dict[str, Any] = {
        key: [{"BlockIndex": i, **tokens(i)} for i in page],
        "ExpiryTime": time.time() + 600,
        "VolumeSize": volume_size,
        "BlockSize": BLOCK,
    }
    if token:
        answer["NextToken"] = token
    return answer


def _read(path: str, index: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(index * BLOCK)
        return f.read(BLOCK)
