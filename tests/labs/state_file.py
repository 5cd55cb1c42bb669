"""An emulator's whole state in one JSON file, written atomically after every change (a restart, even after
kill -9, finds the same cloud). Each lab subclasses StateFile with its own dataclasses and `_load`."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any


class StateFile:
    """The state, its lock (every API call and tick holds it) and its file."""

    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file = state_dir / "state.json"
        self.lock = threading.RLock()
        self.state = self._load()

    def _load(self) -> Any:
        """The state read from self.file, or a fresh one when there is none."""
        raise NotImplementedError

    def save(self) -> None:
        tmp = self.file.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self.state), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file)
