"""pytest fixtures: `dolab` (an emulator with droplets DROPLET_A and DROPLET_B) and `make_dolab` (choose droplets,
dev root, region, delays).

The emulator runs in a subprocess (`python -m tests.dolab`), so a test can restart or kill -9 it. Teardown removes
every loop device whose file lies in the lab's state dir and every link to one, unmounting what a failed test left
mounted on them, whatever state the test ended in.
"""

from __future__ import annotations

import itertools
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dolab import dataplane
from tests.dolab.admin import AdminClient, AdminError
from tests.dolab.config import DEFAULT_DELAYS, TOKEN
from tests.labs.process import LabProcess
from tests.moto_server import free_port

DROPLET_A = 1001
DROPLET_B = 1002
HTTP_TIMEOUT = 30

__all__ = ["DROPLET_A", "DROPLET_B", "TOKEN", "DoLab", "dolab", "make_dolab"]


class DoLab(LabProcess):
    """One emulator. .endpoint ("http://127.0.0.1:PORT", the API under /v2/), .token, .region, .dev_root,
    .state_dir, .metadata_endpoint(droplet_id), .admin (AdminClient), .link_for(volume_name), .api(method, path,
    body) plain HTTP with the token, .manager() a python-digitalocean Manager; .restart(), .kill(), .cleanup()
    (tests/labs/process.py)."""

    name = "dolab"
    token = TOKEN

    def __init__(
        self,
        root: Path,
        droplets: Iterable[int] | dict[int, str],
        dev_root: Path | None = None,
        region: str = "nyc3",
        delays: dict[str, float] | None = None,
    ):
        super().__init__(root, dev_root)
        self.region = region
        statuses = droplets if isinstance(droplets, dict) else dict.fromkeys(droplets, "active")
        self.droplets = {int(d): status for d, status in statuses.items()}
        self.delays = {**DEFAULT_DELAYS, **(delays or {})}
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.admin = AdminClient(self.endpoint)
        self._metadata_ports = {droplet_id: free_port() for droplet_id in self.droplets}

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

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "tests.dolab", "--state", str(self.state_dir), "--port", str(self.port)]
        args += ["--dev-root", str(self.dev_root), "--region", self.region]
        for droplet_id, status in self.droplets.items():
            args += ["--droplet", f"{droplet_id}={self._metadata_ports[droplet_id]}" + (":off" if status == "off" else "")]
        for name, seconds in self.delays.items():
            args += [f"--{name}-delay", str(seconds)]
        return args

    def ready(self) -> bool:
        try:
            known = self.admin.state()["droplets"]
        except AdminError:
            return False
        return all(known.get(str(d), {}).get("metadata_port") == p for d, p in self._metadata_ports.items())


@pytest.fixture
def make_dolab(tmp_path) -> Iterator:
    """make_dolab(dev_root=None, droplets=[DROPLET_A, DROPLET_B] or {id: "active"|"off"}, region="nyc3",
    delays={"attach"|"detach"|"resize"|"busy": seconds}, name=None, start=True): each call a lab of its own
    (named dolab, dolab-2, ... under tmp_path unless `name` says)."""
    labs: list[DoLab] = []
    numbers = itertools.count(1)

    def make(
        dev_root: Path | None = None,
        droplets: Iterable[int] | dict[int, str] | None = None,
        region: str = "nyc3",
        delays: dict[str, float] | None = None,
        name: str | None = None,
        start: bool = True,
    ) -> DoLab:
        number = next(numbers)
        name = name or ("dolab" if number == 1 else f"dolab-{number}")
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
