"""pytest fixtures: `dolab` (an emulator with droplets DROPLET_A and DROPLET_B) and `make_dolab` (choose droplets,
dev root, region, delays).

The emulator runs in a subprocess (`python -m tests.dolab`), so a test can restart or kill -9 it. Teardown removes
every loop device whose file lies in the lab's state dir and every link to one, unmounting what a failed test left
mounted on them, whatever state the test ended in.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dolab import dataplane
from tests.dolab.admin import AdminClient, AdminError
from tests.dolab.config import DEFAULT_DELAYS, TOKEN
from tests.moto_server import free_port

REPO = Path(__file__).resolve().parents[2]
DROPLET_A = 1001
DROPLET_B = 1002
START_TIMEOUT = 30
STOP_TIMEOUT = 10
HTTP_TIMEOUT = 30

__all__ = ["DROPLET_A", "DROPLET_B", "TOKEN", "DoLab", "dolab", "make_dolab"]


class DoLab:
    """One emulator. .endpoint ("http://127.0.0.1:PORT", the API under /v2/), .token, .region, .dev_root,
    .state_dir, .metadata_endpoint(droplet_id), .admin (AdminClient), .link_for(volume_name), .api(method, path,
    body) plain HTTP with the token, .manager() a python-digitalocean Manager; .restart(), .kill(), .cleanup()."""

    token = TOKEN

    def __init__(
        self,
        root: Path,
        droplets: Iterable[int] | dict[int, str],
        dev_root: Path | None = None,
        region: str = "nyc3",
        delays: dict[str, float] | None = None,
    ):
        self.root = root
        self.state_dir = root / "state"
        self.own_dev_root = dev_root is None  # a private dev root is removed whole at cleanup
        self.dev_root = dev_root or root / "dev"
        self.region = region
        statuses = droplets if isinstance(droplets, dict) else dict.fromkeys(droplets, "active")
        self.droplets = {int(d): status for d, status in statuses.items()}
        self.delays = {**DEFAULT_DELAYS, **(delays or {})}
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.admin = AdminClient(self.endpoint)
        self._metadata_ports = {droplet_id: free_port() for droplet_id in self.droplets}
        self.log = root / "dolab.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def metadata_endpoint(self, droplet_id: int) -> str:
        """The metadata service of that droplet (what a droplet reaches at http://169.254.169.254)."""
        if droplet_id not in self._metadata_ports:
            raise KeyError(f"{droplet_id} is not a droplet of this lab; it has {sorted(self._metadata_ports)}")
        return f"http://127.0.0.1:{self._metadata_ports[droplet_id]}"

    def add_droplet(self, droplet_id: int, region: str | None = None, local: bool = True) -> str:
        """A further droplet (kept across restarts); returns its metadata endpoint. local=False: it lives on another
        host, so attachments to it are state only (no device here)."""
        port = free_port()
        endpoint = self.admin.add_droplet(droplet_id, region, metadata_port=port, local=local)
        self._metadata_ports[droplet_id] = port
        return endpoint

    def link_for(self, volume_name: str) -> Path:
        """Where a droplet of this host sees the volume while attached: DEV_ROOT/disk/by-id/scsi-0DO_Volume_<name>."""
        return dataplane.link_path(self.dev_root, volume_name)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None):
        """One API call over plain HTTP: (status, parsed JSON or None). `path` like "/v2/volumes?name=x"."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.endpoint + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {self.token if token is None else token}")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        return status, json.loads(raw) if raw else None

    def manager(self):
        """A python-digitalocean Manager on this lab, exactly as the driver makes one."""
        import digitalocean

        return digitalocean.Manager(token=self.token, end_point=self.endpoint + "/v2/")

    def start(self) -> DoLab:
        self.root.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "tests.dolab", "--state", str(self.state_dir), "--port", str(self.port)]
        args += ["--dev-root", str(self.dev_root), "--region", self.region]
        for droplet_id, status in self.droplets.items():
            args += ["--droplet", f"{droplet_id}={self._metadata_ports[droplet_id]}" + (":off" if status == "off" else "")]
        for name, seconds in self.delays.items():
            args += [f"--{name}-delay", str(seconds)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                known = self.admin.state()["droplets"]
                if all(known.get(str(d), {}).get("metadata_port") == p for d, p in self._metadata_ports.items()):
                    return self
            except (OSError, AdminError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dolab did not start on {self.endpoint}: see {self.log}")
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

    def restart(self) -> DoLab:
        """Stop (if running) and start on the same ports and state: volumes, snapshots, attachments survive;
        faults do not."""
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


@pytest.fixture
def make_dolab(tmp_path) -> Iterator:
    """make_dolab(name="dolab", droplets=[DROPLET_A, DROPLET_B] or {id: "active"|"off"}, dev_root=None,
    region="nyc3", delays={"attach"|"detach"|"resize": s}, start=True)."""
    labs: list[DoLab] = []

    def make(
        name: str = "dolab",
        droplets: Iterable[int] | dict[int, str] | None = None,
        dev_root: Path | None = None,
        region: str = "nyc3",
        delays: dict[str, float] | None = None,
        start: bool = True,
    ) -> DoLab:
        lab = DoLab(tmp_path / name, droplets or [DROPLET_A, DROPLET_B], dev_root, region, delays)
        labs.append(lab)
        return lab.start() if start else lab

    yield make
    for lab in labs:
        lab.cleanup()


@pytest.fixture
def dolab(make_dolab) -> DoLab:
    """An emulator with droplets DROPLET_A and DROPLET_B (both active, nyc3, on this host) and a private dev root."""
    return make_dolab()
