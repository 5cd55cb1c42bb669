"""The emulator's state: volumes, snapshots, modifications, instances and the links it owns, kept in one JSON file.

Every change is saved atomically (write a temporary file, fsync, rename) so a test can kill or restart the
emulator and find the same cloud. Timed transitions store wall-clock due times, so they go on after a restart.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.labs.state_file import StateFile

ACCOUNT_ID = "123456789012"


def new_id(prefix: str) -> str:
    """AWS's long id form: prefix, dash, 17 hex digits."""
    return f"{prefix}-0{secrets.token_hex(8)}"


@dataclass
class Attachment:
    instance_id: str
    device: str  # as asked for in AttachVolume: /dev/sdf
    state: str  # attaching | attached | detaching
    attach_time: float
    due: float  # when the current state's transition may happen
    force: bool = False
    loop: str | None = None  # /dev/loopN once attached
    link: str | None = None  # the by-id or xvd link made for it


@dataclass
class Volume:
    id: str
    size: int  # GiB
    az: str
    type: str
    iops: int | None
    throughput: int | None
    encrypted: bool
    kms_key_id: str | None
    snapshot_id: str | None
    state: str  # creating | available | in-use
    create_time: float
    due: float
    tags: dict[str, str] = field(default_factory=dict)
    attachment: Attachment | None = None
    client_token: str | None = None  # CreateVolume's idempotency token


@dataclass
class Snapshot:
    id: str
    volume_id: str
    volume_size: int
    state: str  # pending | completed | error
    start_time: float
    due: float
    description: str
    encrypted: bool
    kms_key_id: str | None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Modification:
    volume_id: str
    state: str  # modifying | optimizing | completed
    original: dict[str, Any]  # size, type, iops, throughput before
    target: dict[str, Any]
    start_time: float
    due: float
    end_time: float | None = None


@dataclass
class Instance:
    id: str
    az: str
    platform: str  # nitro | xen: how attached volumes show up as devices
    state: str = "running"  # running | stopped
    imds_port: int = 0


@dataclass
class State:
    volumes: dict[str, Volume] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    modifications: dict[str, Modification] = field(default_factory=dict)  # the latest per volume id
    instances: dict[str, Instance] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # every link the emulator made -> its target


class Store(StateFile):
    state: State

    def _load(self) -> State:
        if not self.file.exists():
            return State()
        raw = json.loads(self.file.read_text())
        volumes = {}
        for vid, v in raw["volumes"].items():
            att = v.pop("attachment")
            volumes[vid] = Volume(**v, attachment=Attachment(**att) if att else None)
        return State(
            volumes=volumes,
            snapshots={k: Snapshot(**v) for k, v in raw["snapshots"].items()},
            modifications={k: Modification(**v) for k, v in raw["modifications"].items()},
            instances={k: Instance(**v) for k, v in raw["instances"].items()},
            links=raw["links"],
        )

    def volume_file(self, volume_id: str) -> Path:
        return self.dir / "volumes" / f"{volume_id}.img"

    def snapshot_file(self, snapshot_id: str) -> Path:
        return self.dir / "snapshots" / f"{snapshot_id}.img"
