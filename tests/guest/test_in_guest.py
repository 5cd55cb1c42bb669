"""The tests under tests/guest/inside, run in ONE boot of the guest kernel (device-mapper, kernel NFS),
so the host's test run fails when they fail. Off by default until CI runs it: CONVOY_GUEST_TESTS=1
switches it on (`make guest-test` does). Needs root (the first run builds the image: ~4 min)."""

import os

import pytest

from tests.guest.boot import DEFAULT_ARGS, run_pytest
from tests.guest.image import ensure_image

pytestmark = [
    pytest.mark.skipif(os.environ.get("CONVOY_GUEST_TESTS") != "1",
                       reason="guest-kernel tests are off: CONVOY_GUEST_TESTS=1 (or make guest-test) runs them"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: builds the guest image, the guest's tests run as root"),
]


def test_the_inside_suite_passes_in_the_guest_kernel():
    run = run_pytest(ensure_image(), DEFAULT_ARGS)
    failures = "\n".join(run.failures) or "(no failed test named: see pytest.log and serial.log)"
    assert run.status == 0, (f"the guest's pytest exited {run.status}; failed:\n{failures}\n"
                             f"logs: {run.results}/pytest.log, {run.serial_log}")
