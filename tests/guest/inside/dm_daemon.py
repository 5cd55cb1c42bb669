"""A daemon on the devicemapper back-end over the `pool_devices` loop devices, and what its tests check."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.drivers import dm_host


def daemon_args(pool_devices, *extra: str) -> list[str]:
    args = ["--drivers", "devicemapper"]
    options = {
        "dm.datadev": pool_devices.datadev,
        "dm.metadatadev": pool_devices.metadatadev,
        "dm.thinpoolname": pool_devices.name,
    }
    for key, value in options.items():
        args += ["--driver-opts", f"{key}={value}"]
    return args + list(extra)


def pool_ids(pool: str, metadatadev: str) -> set[int]:
    """The thin device ids the pool holds (thin_ls on a metadata snapshot of the live pool)."""
    dm_host.sh("dmsetup", "message", pool, "0", "reserve_metadata_snap")
    try:
        out = dm_host.sh("thin_ls", "-m", "--no-headers", "-o", "DEV", metadatadev)
    finally:
        dm_host.sh("dmsetup", "message", pool, "0", "release_metadata_snap")
    return {int(line.split()[0]) for line in out.splitlines() if line.strip()}


def ledger(root: Path, pool: str) -> dict:
    return dm_host.ledger(root, pool)


def assert_ledger_matches_pool(root: Path, devices) -> dict:
    """Every id the pool holds is recorded, every recorded id is in the pool, none is half-made."""
    record = ledger(root, devices.name)
    states = {key: entry["state"] for key, entry in record["devices"].items()}
    assert all(state in ("ready", "kept") for state in states.values()), f"unsettled: {states}"
    in_pool = pool_ids(devices.name, devices.metadatadev)
    assert {int(key) for key in record["devices"]} == in_pool, f"ledger {states} vs pool {in_pool}"
    return record


def snapshot_id(root: Path, pool: str, volume: str, snapshot: str) -> int:
    for key, entry in ledger(root, pool)["devices"].items():
        if entry["kind"] == "snapshot" and entry["volume"] == volume and entry["snapshot"] == snapshot:
            return int(key)
    raise AssertionError(f"no thin device recorded for snapshot {snapshot} of {volume}")


def activated(pool: str, device_id: int, size: int, name: str, read_only: bool = True) -> str:
    args = ["dmsetup", "create", name, "--table", f"0 {size // 512} thin /dev/mapper/{pool} {device_id}"]
    dm_host.sh(*(args + (["--readonly"] if read_only else [])))
    return f"/dev/mapper/{name}"


def deactivate(name: str) -> None:
    dm_host.sh("dmsetup", "remove", "--retry", name)




def fsck_clean(device: str) -> subprocess.CompletedProcess:
    return subprocess.run(["e2fsck", "-n", "-f", device], capture_output=True, text=True)
