"""A cloud emulator run as a subprocess for tests (`python -m tests.<lab>`), so a test can restart or kill -9 it.

LabProcess is what the ec2lab and dolab fixtures share: start (and wait until the lab says it is ready), stop
(SIGTERM, then SIGKILL), kill (-9: nothing saved beyond what every call saved), restart on the same ports and state,
and cleanup (every loop device and link the lab made, whatever state the test left; see dataplane.remove_leftovers).
A subclass gives `command()` and `ready()`.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.labs import dataplane

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30
STOP_TIMEOUT = 10


class LabProcess:
    name = "lab"  # for messages and the log file's name

    def __init__(self, root: Path, dev_root: Path | None):
        self.root = root
        self.state_dir = root / "state"
        self.own_dev_root = dev_root is None  # a private dev root is removed whole at cleanup
        self.dev_root = dev_root or root / "dev"
        self.log = root / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The emulator's command line."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Does the running emulator serve everything asked of it yet? (may raise OSError while it starts)"""
        raise NotImplementedError

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=REPO, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.ready():
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: see {self.log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        self.proc = None

    def kill(self) -> None:
        """kill -9: no chance to save anything beyond what every call already saved."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
            self.proc = None

    def restart(self):
        """Stop (if running) and start on the same ports and state: the cloud survives, faults do not."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop, then remove every link and loop device the lab made; unmount (lazily) what is still mounted on them."""
        self.stop()
        dataplane.remove_leftovers(self.state_dir, self._recorded_links())
        if self.own_dev_root:
            shutil.rmtree(self.dev_root, ignore_errors=True)

    def _recorded_links(self) -> list[str]:
        try:
            return list(json.loads((self.state_dir / "state.json").read_text())["links"])
        except (OSError, ValueError, KeyError):
            return []
