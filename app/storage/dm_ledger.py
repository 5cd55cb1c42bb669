"""Which thin device id belongs to which volume or snapshot: the devicemapper back-end's ledger.

dm-thin knows device ids only; convoy knows names. The catalog keeps each
volume's and snapshot's id in its details, but the catalog is written after
the driver answers, so a kill -9 between a `dmsetup message` and that write
would lose an id (an orphan nobody names) or, worse, let it be allocated
twice. The ledger closes that gap: every id is written here, fsync'ed,
*before* the message that creates or deletes it (an intent), and marked
done after. At start, an unfinished intent is settled by asking the pool
whether the device exists (`DmDriver.start`).

One JSON file per pool under the daemon's root, replaced atomically:

    {"next_id": 7, "devices": {"5": {"kind": "volume", "volume": "db", "size": ..., "state": "ready"}, ...}}

States: creating (intent before create_thin/create_snap), ready, deleting
(intent before delete), kept (`convoy delete -r`: the data stays; a create
of the same name takes it back). Ids only grow, so an id freed in the pool
is not handed out again while any record might still name it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.errors import Damaged, Unavailable
from app.private_dirs import make_private

MAX_ID = (1 << 24) - 1  # dm-thin's device ids are 24 bits

CREATING, READY, DELETING, KEPT = "creating", "ready", "deleting", "kept"


@dataclass
class Entry:
    kind: str  # "volume" or "snapshot"
    volume: str
    state: str
    size: int  # bytes
    snapshot: str | None = None
    origin: int | None = None  # a snapshot's volume's id


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.RLock()
        self.next_id = 1
        self.devices: dict[int, Entry] = {}

    def load(self) -> None:
        make_private(self.path.parent)
        try:
            raw: Any = json.loads(self.path.read_text())
            self.next_id = int(raw["next_id"])
            self.devices = {int(key): Entry(**value) for key, value in raw["devices"].items()}
        except FileNotFoundError:
            self.next_id, self.devices = 1, {}
        except (ValueError, KeyError, TypeError) as err:
            raise Damaged(
                f"{self.path} (convoy's record of thin device ids) is damaged: {err}; restore it from a copy, "
                "or move it away to start the pool's record afresh (existing thin devices are then reported as orphans)"
            ) from None

    def save(self) -> None:
        data = {"next_id": self.next_id, "devices": {str(key): asdict(entry) for key, entry in sorted(self.devices.items())}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, json.dumps(data, indent=1).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as err:
            raise Unavailable(f"cannot write {self.path}: {err.strerror}; free space on the daemon's root") from None

    @contextmanager
    def changing(self) -> Iterator[None]:
        """Change the records under the lock; saved (durably) when the block ends."""
        with self.lock:
            yield
            self.save()

    def allocate(self, entry: Entry, taken: set[int]) -> int:
        """A fresh id for `entry`, recorded (state creating) before the caller sends its message."""
        with self.changing():
            device_id = self.next_id
            for _ in range(MAX_ID):
                if device_id > MAX_ID:
                    device_id = 1
                if device_id not in self.devices and device_id not in taken:
                    break
                device_id += 1
            else:
                raise Unavailable("every thin device id is in use: delete volumes or snapshots first")
            self.devices[device_id] = entry
            self.next_id = device_id + 1
            return device_id

    def set_state(self, device_id: int, state: str) -> None:
        with self.changing():
            self.devices[device_id].state = state

    def drop(self, device_id: int) -> None:
        with self.changing():
            self.devices.pop(device_id, None)

    def find(self, kind: str, volume: str, snapshot: str | None = None) -> int | None:
        with self.lock:
            for device_id, entry in self.devices.items():
                if entry.kind == kind and entry.volume == volume and entry.snapshot == snapshot:
                    return device_id
        return None

    def owns(self, device_id: int, volume: str, snapshot: str | None = None) -> bool:
        """Whether `device_id` is recorded for this volume (or snapshot): a guard before any delete."""
        entry = self.devices.get(device_id)
        return entry is not None and entry.volume == volume and entry.snapshot == snapshot
