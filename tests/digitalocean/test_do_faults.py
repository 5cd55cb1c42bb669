"""The digitalocean back-end when things go wrong: not a droplet, a bad token, rate limits, 5xx, stuck actions."""

from __future__ import annotations

import json
import time

import pytest

from tests.daemon_harness import mounted_points
from tests.moto_server import free_port

pytestmark = pytest.mark.needs_root


def test_a_host_that_is_not_a_droplet_is_told_at_start_and_on_use(do_host):
    silent = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    host = do_host(env={"DO_METADATA_ENDPOINT": silent})
    host.wait_ready()
    assert "does not look like a DigitalOcean droplet" in host.log_text()
    status, data = host.docker("Create", {"Name": "nowhere", "Opts": {}})
    assert status != 200 and "does not look like a DigitalOcean droplet" in data["Err"] and silent in data["Err"], data
    info = json.loads(host.cli("info", "--json", check=True).stdout)
    assert "does not look like a DigitalOcean droplet" in info["drivers"]["digitalocean"]["error"]


def test_a_refused_token_is_named_and_never_logged(do_host):
    host = do_host(env={"DO_TOKEN": "dop_v1_not-the-right-one"})
    host.wait_ready()
    status, data = host.docker("Create", {"Name": "vol", "Opts": {}})
    assert status != 200 and "refused the API token" in data["Err"] and "DO_TOKEN" in data["Err"], data
    assert "not-the-right-one" not in host.log_text()


def test_no_token_says_where_to_put_one(do_host):
    host = do_host(env={"DO_TOKEN": ""})
    host.wait_ready()
    status, data = host.docker("Create", {"Name": "vol", "Opts": {}})
    assert status != 200 and "set DO_TOKEN" in data["Err"] and "do.token_file" in data["Err"], data


def test_the_token_may_come_from_a_file(do_host, dolab, tmp_path):
    token = tmp_path / "token"
    token.write_text(dolab.token + "\n")
    host = do_host(1001, "host-a", "--driver-opts", f"do.token_file={token}", env={"DO_TOKEN": ""})
    host.docker_ok("Create", {"Name": "vol", "Opts": {"size": "1G"}})


def test_a_bad_daemon_option_stops_the_start_with_the_reason(do_host):
    host = do_host(1001, "host-a", "--driver-opts", "do.attach_timeout=500", start=False)
    host.start(wait=False)
    assert host.process.wait(30) != 0
    assert "do.attach_timeout=500 must be 1 to 110 seconds" in host.log_text()


def test_a_rate_limit_storm_and_server_errors_are_waited_out(do_host, dolab):
    host = do_host()
    host.wait_ready()
    dolab.admin.rate_limit_storm(5)
    host.docker_ok("Create", {"Name": "patient", "Opts": {"size": "1G"}})
    dolab.admin.fail_next(3, status=503)
    mountpoint = host.docker_ok("Mount", {"Name": "patient", "ID": "c1"})["Mountpoint"]
    assert mountpoint in mounted_points()
    faults = dolab.admin.state()["faults"]
    assert faults["storm_calls"] == 0 and faults["fail_calls"] == 0, "the failed calls were met, and retried"
    assert "rate limited by DigitalOcean" in host.log_text()
    host.docker_ok("Unmount", {"Name": "patient", "ID": "c1"})


def test_a_create_and_an_attach_whose_answers_are_lost_are_retried_into_what_do_made(do_host, dolab):
    """DO did the work but the answer was a 5xx (a dropped connection, a proxy): the retry uses what DO made."""
    host = do_host()
    host.wait_ready()
    dolab.admin.fail_next(1, status=502, only="POST /v2/volumes", after_work=True)
    host.docker_ok("Create", {"Name": "once", "Opts": {"size": "1G"}})
    named = [v for v in dolab.api("GET", "/v2/volumes")[1]["volumes"] if v["name"] == "once"]
    assert len(named) == 1, "one DO volume, not two"
    volume_id = named[0]["id"]
    dolab.admin.fail_next(1, status=502, only=f"POST /v2/volumes/{volume_id}/actions", after_work=True)
    mountpoint = host.docker_ok("Mount", {"Name": "once", "ID": "c1"})["Mountpoint"]
    assert mountpoint in mounted_points()
    assert dolab.admin.state()["faults"]["fail_calls"] == 0, "the lost answers were met"
    assert dolab.api("GET", f"/v2/volumes/{volume_id}")[1]["volume"]["droplet_ids"] == [1001]
    host.docker_ok("Unmount", {"Name": "once", "ID": "c1"})


def test_an_attach_that_never_completes_fails_the_mount_in_time_and_leaves_nothing(do_host, dolab):
    host = do_host(1001, "host-a", "--driver-opts", "do.attach_timeout=3")
    host.docker_ok("Create", {"Name": "stuck", "Opts": {"size": "1G"}})
    dolab.admin.stick_actions(True)
    started = time.monotonic()
    status, data = host.docker("Mount", {"Name": "stuck", "ID": "c1"})
    assert status != 200 and "did not happen in time" in data["Err"] and "mount again" in data["Err"], data
    assert time.monotonic() - started < 100, "Docker's Mount must not hang"
    assert str(host.mount_root / "stuck") not in mounted_points()
    dolab.admin.stick_actions(False)
    mountpoint = host.docker_ok("Mount", {"Name": "stuck", "ID": "c1"})["Mountpoint"]
    assert mountpoint in mounted_points(), "the next mount works once DigitalOcean does"
    host.docker_ok("Unmount", {"Name": "stuck", "ID": "c1"})


def test_an_unreachable_api_endpoint_is_named_at_start(do_host):
    closed = f"http://127.0.0.1:{free_port()}"
    host = do_host(1001, "host-a", "--driver-opts", f"do.api_endpoint={closed}")
    host.wait_ready()
    status, data = host.docker("Create", {"Name": "vol", "Opts": {}})
    assert status != 200 and f"the DigitalOcean API at {closed} did not answer" in data["Err"], data
    assert "do.api_endpoint" in data["Err"]
