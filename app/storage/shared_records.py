"""Volume records on shared storage (`<vfs.path>/.convoy/volumes/NAME.json`).

Other hosts that share `vfs.path` write them, so they are untrusted input:
each is read size-capped, without following links, validated against
`SharedRecordDoc`, and its name must be a valid volume name equal to the
file's own name (so `../../etc` can never become a mount point). A bad record
is skipped with one log line each time its file changes, not on every List
(Docker calls List and Get often).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import dataclass
from typing import Annotated, NotRequired

from pydantic import Field
from typing_extensions import (
    TypedDict,  # pydantic reads typing.TypedDict only from 3.12 on
)

from app.errors import ConvoyError
from app.names import check_volume_name
from app.storage.nofollow import read_capped_at
from app.units import MAX_SIZE
from app.validation import parse_json

log = logging.getLogger(__name__)

SUFFIX = ".json"
MAX_RECORD_BYTES = 4096  # a record is about 150 bytes


class SharedRecordDoc(TypedDict):
    name: Annotated[str, Field(strict=True)]
    size: NotRequired[Annotated[int, Field(strict=True, gt=0, le=MAX_SIZE)] | None]
    created_at: Annotated[str, Field(strict=True, max_length=64)]
    driver: NotRequired[Annotated[str, Field(strict=True, max_length=64)]]


@dataclass(frozen=True)
class SharedRecord:
    name: str
    size: int | None
    created_at: str


def record_file(name: str) -> str:
    return name + SUFFIX


def parse_record(file_name: str, data: bytes) -> SharedRecord:
    """The record in `data`, read from `file_name`; ConvoyError saying what is wrong otherwise."""
    doc: SharedRecordDoc = parse_json(SharedRecordDoc, data, what="the record", max_bytes=MAX_RECORD_BYTES)
    name = check_volume_name(doc["name"])
    if record_file(name) != file_name:
        raise ConvoyError(f"it names volume {name!r}, but its file is {file_name}")
    return SharedRecord(name, doc.get("size"), doc["created_at"])


class SharedRecordReader:
    """Reads a records directory, re-parsing a file only when it changed."""

    def __init__(self, where: str):
        self.where = where
        self._cache: dict[str, tuple[tuple[int, ...], SharedRecord | None]] = {}
        self._lock = threading.Lock()

    def read_all(self, records_fd: int) -> list[SharedRecord]:
        found: list[SharedRecord] = []
        seen: set[str] = set()
        with os.scandir(records_fd) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.endswith(SUFFIX):
                    continue  # temporary files of a write under way
                seen.add(entry.name)
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed meanwhile
                record = self._read(records_fd, entry.name, st)
                if record is not None:
                    found.append(record)
        with self._lock:
            for gone in set(self._cache) - seen:
                del self._cache[gone]
        return found

    def read_one(self, records_fd: int, volume: str) -> SharedRecord | None:
        """The record of `volume` alone, if there is a valid one."""
        file_name = record_file(volume)
        try:
            st = os.stat(file_name, dir_fd=records_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return self._read(records_fd, file_name, st)

    def _read(self, records_fd: int, file_name: str, st: os.stat_result) -> SharedRecord | None:
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        with self._lock:
            cached = self._cache.get(file_name)
        if cached is not None and cached[0] == key:
            return cached[1]
        record = None
        try:
            if not stat.S_ISREG(st.st_mode):
                raise ConvoyError("it is not a regular file")
            record = parse_record(file_name, read_capped_at(records_fd, file_name, MAX_RECORD_BYTES))
        except (ConvoyError, OSError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            log.warning("skipping volume record %s/%s written on shared storage: %s", self.where, file_name, reason)
        with self._lock:
            self._cache[file_name] = (key, record)
        return record
