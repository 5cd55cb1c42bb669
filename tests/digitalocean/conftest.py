"""Daemons on the digitalocean back-end, each posing as one droplet of the DO API emulator (tests/dolab)."""

from __future__ import annotations

import pytest

from tests.daemon_harness import cli_json
from tests.dolab.fixture import DROPLET_A, DROPLET_B

__all__ = ["DROPLET_A", "DROPLET_B", "cli_json", "volume_of"]


@pytest.fixture
def do_host(make_daemon, dolab):
    """do_host(droplet_id, name, *daemon_args, env=None): a daemon whose droplet metadata says it is that droplet."""

    def make(droplet_id: int = DROPLET_A, name: str = "host-a", *args: str, env: dict | None = None, start: bool = True):
        return make_daemon(
            "--drivers", "digitalocean",
            "--driver-opts", f"do.api_endpoint={dolab.endpoint}",
            "--driver-opts", f"do.dev_root={dolab.dev_root}",
            *args,
            name=name,
            env={"DO_METADATA_ENDPOINT": dolab.metadata_endpoint(droplet_id), "DO_TOKEN": dolab.token, **(env or {})},
            start=start,
        )

    return make




def volume_of(dolab, daemon, name: str) -> dict:
    """The DO volume behind convoy volume `name`, as the API shows it."""
    volume_id = cli_json(daemon, "inspect", name)["backend"]["volume_id"]
    status, answer = dolab.api("GET", f"/v2/volumes/{volume_id}")
    assert status == 200, answer
    return answer["volume"]
