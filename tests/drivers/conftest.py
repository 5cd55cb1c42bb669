"""One daemon per back-end of `BACKENDS`, for the suite every back-end must pass."""

from __future__ import annotations

import subprocess

import pytest

from tests.drivers.backends import BACKENDS, Backend, Host


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
        lab = request.getfixturevalue(backend.lab) if backend.lab else None
        host = Host(backend, None, storage, lab)
        host.prepare()
        host.daemon = make_daemon(*host.daemon_args(), name=name, env=host.daemon_env())
        hosts.append(host)
        return host

    yield make
    for host in hosts:  # a stopped daemon leaves mounts and attachments in place, by design
        host.daemon.stop()
        host.daemon.cleanup_mounts()
        if host.lab is None:  # the emulator detaches its own
            for device in host.attached_devices():
                subprocess.run(["losetup", "-d", device], check=False)
        host.cleanup()


@pytest.fixture
def host(make_host, backend) -> Host:
    return make_host(backend)
