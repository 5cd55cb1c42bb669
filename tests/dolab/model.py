"""The emulated account: volumes, snapshots, actions, droplets and the device links the emulator owns, in one JSON file.

Every change is saved atomically before its answer leaves, so a test can kill -9 or restart the emulator and find the
same cloud. Timed transitions store wall-clock due times, so they go on after a restart.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.labs.state_file import StateFile

FIRST_ACTION_ID = 1_000_001


def new_uuid() -> str:
    return str(uuid.uuid4())


def iso(t: float | None) -> str | None:
    """DO's timestamps: ISO 8601, UTC, whole seconds."""
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


@dataclass
class Volume:
    id: str
    name: str
    region: str
    size: int  # GiB
    description: str
    created_at: float
    filesystem_type: str = ""
    filesystem_label: str = ""
    tags: list[str] = field(default_factory=list)
    droplet_ids: list[int] = field(default_factory=list)  # at most one, as on DO
    snapshot_id: str | None = None  # the snapshot it was created from
    loop: str | None = None  # /dev/loopN while attached to a droplet of this host
    link: str | None = None  # DEV_ROOT/disk/by-id/scsi-0DO_Volume_<name> while attached to a droplet of this host


@dataclass
class Snapshot:
    id: str
    name: str
    volume_id: str
    region: str
    created_at: float
    min_disk_size: int  # GiB: the volume's size when taken
    size_gigabytes: float  # billable: the bytes the copy holds
    tags: list[str] = field(default_factory=list)


@dataclass
class Action:
    id: int
    type: str  # attach_volume | detach_volume | resize_volume
    status: str  # in-progress | completed | errored
    started_at: float
    volume_id: str
    region: str
    due: float  # when it may complete
    droplet_id: int | None = None
    size: int | None = None  # resize: the new size
    completed_at: float | None = None
    busy_since: float | None = None  # detach: when the device was first found held
    error: str = ""  # why it errored (the admin state shows it; DO's action object has no such field)


@dataclass
class Droplet:
    id: int
    region: str
    status: str = "active"  # active | off
    metadata_port: int = 0
    local: bool = True  # lives on this host: its attachments get a loop device and a link


@dataclass
class State:
    volumes: dict[str, Volume] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    actions: dict[str, Action] = field(default_factory=dict)  # keyed by str(id): JSON keys are strings
    droplets: dict[str, Droplet] = field(default_factory=dict)  # keyed by str(id)
    links: dict[str, str] = field(default_factory=dict)  # every link the emulator made -> its target
    tags: list[str] = field(default_factory=list)  # every tag, in its canonical spelling
    next_action_id: int = FIRST_ACTION_ID


class Store(StateFile):
    state: State

    def _load(self) -> State:
        if not self.file.exists():
            return State()
        raw = json.loads(self.file.read_text())
        return State(
            volumes={k: Volume(**v) for k, v in raw["volumes"].items()},
            snapshots={k: Snapshot(**v) for k, v in raw["snapshots"].items()},
            actions={k: Action(**v) for k, v in raw["actions"].items()},
            droplets={k: Droplet(**v) for k, v in raw["droplets"].items()},
            links=raw["links"],
            next_action_id=raw["next_action_id"],
            tags=raw.get("tags", []),  # state files from before tags
        )

    def volume_file(self, volume_id: str) -> Path:
        return self.dir / "volumes" / f"{volume_id}.img"

    def snapshot_file(self, snapshot_id: str) -> Path:
        return self.dir / "snapshots" / f"{snapshot_id}.img"

    def droplet(self, droplet_id: int) -> Droplet | None:
        return self.state.droplets.get(str(droplet_id))

    def new_action(self, **fields) -> Action:
        action = Action(id=self.state.next_action_id, **fields)
        self.state.next_action_id += 1
        self.state.actions[str(action.id)] = action
        return action
