import os

import pytest

from tests.daemon_harness import Daemon


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: the daemon makes real mounts")
        for item in items:
            if "needs_root" in item.keywords:
                item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_root: makes real mounts; runs as root (CI does)")


@pytest.fixture
def make_daemon(tmp_path):
    """Start daemons with their own roots; stop them and clean their mounts afterwards."""
    started = []

    def make(*args, name="host", env=None, start=True):
        daemon = Daemon(tmp_path / name, *args, env=env)
        started.append(daemon)
        return daemon.start() if start else daemon

    yield make
    for daemon in started:
        daemon.stop()
    for daemon in started:
        daemon.cleanup_mounts()


@pytest.fixture
def daemon(make_daemon):
    return make_daemon()
