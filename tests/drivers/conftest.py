"""One daemon per back-end of `BACKENDS`, for the suite every back-end must pass."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon
from tests.drivers.backends import BACKENDS, Backend, loop_devices_of


@dataclass
class Host:
    """A daemon on one back-end, with where its storage lives."""

    backend: Backend
    daemon: Daemon
    storage: Path

    def storage_of(self, name: str) -> Path:
        return self.backend.storage_of(self.daemon, self.storage, name)

    def plant(self, name: str, files: dict[str, bytes]) -> None:
        self.backend.plant(self.daemon, self.storage, name, files)

    def loop_devices(self) -> dict[str, str]:
        return loop_devices_of(self.storage)


@pytest.fixture(params=BACKENDS, ids=[b.id for b in BACKENDS])
def backend(request) -> Backend:
    return request.param


@pytest.fixture
def make_host(make_daemon, tmp_path, request):
    """make_host(backend, name): a started daemon on that back-end."""

    hosts: list[Host] = []

    def make(backend: Backend, name: str = "host") -> Host:
        storage = (request.getfixturevalue("xfs_dir") / name) if backend.on_xfs else tmp_path / f"{name}-storage"
        storage.mkdir(parents=True, exist_ok=True)
        daemon = make_daemon(*backend.daemon_args(storage), name=name)
        hosts.append(Host(backend, daemon, storage))
        return hosts[-1]

    yield make
    for host in hosts:  # a stopped daemon leaves mounts and attachments in place, by design
        host.daemon.stop()
        host.daemon.cleanup_mounts()
        for device in host.loop_devices():
            subprocess.run(["losetup", "-d", device], check=False)


@pytest.fixture
def host(make_host, backend) -> Host:
    return make_host(backend)
