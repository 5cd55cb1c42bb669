"""The emulator's settings and the faults switched on per test (faults are not persisted: a restart clears them)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DELAYS = {"create": 0.2, "attach": 0.3, "detach": 0.3, "snapshot": 0.5, "modify": 0.5}


@dataclass
class Settings:
    region: str = "us-east-1"
    dev_root: Path = Path("/dev")
    delays: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DELAYS))


@dataclass
class Faults:
    lock: threading.Lock = field(default_factory=threading.Lock)
    throttle_calls: int = 0  # the next N API calls answer RequestLimitExceeded
    stuck_attach_all: bool = False  # attaches never complete
    stuck_attach_volumes: set[str] = field(default_factory=set)
    fail_snapshots: bool = False  # pending snapshots end in state error instead of completed
    calls: list[str] = field(default_factory=list)  # every API action received, in order (throttled ones too)

    def take_throttle(self) -> bool:
        with self.lock:
            if self.throttle_calls > 0:
                self.throttle_calls -= 1
                return True
            return False

    def attach_stuck(self, volume_id: str) -> bool:
        return self.stuck_attach_all or volume_id in self.stuck_attach_volumes
