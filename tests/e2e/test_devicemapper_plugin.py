"""The managed plugin with DRIVER=devicemapper, in the guest kernel's own Docker engine (this machine's kernel
has no device-mapper). The session's engine has built the bundle (`make install`); the guest, which has no
network, creates the plugin from that directory of the repository it sees at /repo and runs
tests/guest/inside/managed_plugin in one boot of its own. Off unless CONVOY_GUEST_TESTS=1, like the other
guest-kernel tests (`make test` sets it)."""

import os

import pytest

from tests.guest.boot import MANAGED_PLUGIN_TESTS, Settings, run_pytest
from tests.guest.image import REPO, ensure_image

pytestmark = pytest.mark.skipif(os.environ.get("CONVOY_GUEST_TESTS") != "1",
                                reason="guest-kernel tests are off: CONVOY_GUEST_TESTS=1 (or make test) runs them")


def test_the_managed_plugin_serves_devicemapper_volumes_in_the_guests_docker_engine(engine):
    assert (REPO / "plugin" / "build" / "bundle" / "config.json").exists(), "the session's make install built no bundle"
    # Creating the plugin from its ~220 MB bundle takes minutes on the emulated CPU: a longer deadline than the suite's
    settings = Settings.from_env(results=REPO / "build" / "guest-results-plugin", timeout=2400.0)
    run = run_pytest(ensure_image(), [MANAGED_PLUGIN_TESTS], settings)
    failures = "\n".join(run.failures) or "(no failed test named: see pytest.log and serial.log)"
    assert run.status == 0, (f"the guest's pytest exited {run.status}; failed:\n{failures}\n"
                             f"logs: {run.results}/pytest.log, {run.serial_log}")
