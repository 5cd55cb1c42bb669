"""The ebs back-end when EC2 misbehaves: a stuck attachment must not hang Docker, throttling backs off."""

from __future__ import annotations

import time

import pytest

from tests.daemon_harness import mounted_points
from tests.ebs.conftest import INSTANCE_A

pytestmark = pytest.mark.needs_root


def test_an_attachment_that_never_completes_fails_the_mount_in_time_and_leaves_nothing(ebs_host, ec2lab):
    host = ebs_host(INSTANCE_A, "host-a", "--driver-opts", "ebs.attach_timeout=3")
    host.docker_ok("Create", {"Name": "stuck", "Opts": {"size": "1G"}})
    ec2lab.admin.stick_attach()
    started = time.monotonic()
    status, data = host.docker("Mount", {"Name": "stuck", "ID": "c1"})
    assert status != 200 and "did not happen in time" in data["Err"] and "mount again" in data["Err"], data
    assert time.monotonic() - started < 30, "Docker's Mount must not hang"
    assert str(host.mount_root / "stuck") not in mounted_points()
    ec2lab.admin.stick_attach(stuck=False)
    mountpoint = host.docker_ok("Mount", {"Name": "stuck", "ID": "c1"})["Mountpoint"]
    assert mountpoint in mounted_points(), "the next mount works once EC2 does"
    host.docker_ok("Unmount", {"Name": "stuck", "ID": "c1"})


def test_throttled_calls_back_off_and_succeed(ebs_host, ec2lab):
    host = ebs_host()
    host.wait_ready()
    ec2lab.admin.throttle(5)
    host.docker_ok("Create", {"Name": "patient", "Opts": {"size": "1G"}})
    assert ec2lab.admin.state()["faults"]["throttle_calls"] == 0, "the throttled calls were met, and retried"
    assert host.cli("inspect", "patient").returncode == 0


def test_a_bad_attach_timeout_stops_the_start_with_the_reason(make_daemon):
    host = make_daemon("--drivers", "ebs", "--driver-opts", "ebs.attach_timeout=500", start=False)
    host.start(wait=False)
    assert host.process.wait(30) != 0
    assert "ebs.attach_timeout=500 must be 1 to 110 seconds" in host.log_text()
