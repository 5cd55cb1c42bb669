"""rancher/convoy 0.5.2's device-mapper (deltablock) backups in tests/fixtures: what its expected.txt records, and a
copy of its store for a test to restore from (the fixture itself is never written)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

DM_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "convoy-0.5.2-devicemapper-backup"


def expected_values(fixture: Path = DM_FIXTURE) -> dict[str, str]:
    """expected.txt's KEY=VALUE lines (URLs as Convoy printed them, with DEST for the store, sizes, sha256s)."""
    values = {}
    for line in (fixture / "expected.txt").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value
    return values


def copied_store(dest: Path) -> dict[str, str]:
    """Copy the fixture's store to `dest`; its expected values, with each backup's URL pointing into the copy."""
    shutil.copytree(DM_FIXTURE, dest)
    values = expected_values()
    return {key: value.replace("DEST", str(dest)) if key.endswith("_url_printed") else value
            for key, value in values.items()}


def assert_restored(mountpoint: Path, expected: dict[str, str], which: str) -> None:
    """The volume restored from backup `which` ("backup1", "backup2") holds the files expected.txt lists, with
    their sha256, and not the one that backup had deleted."""
    for key, digest in expected.items():
        if key.startswith(f"{which}_file_sha256 "):
            file = key.split(" ", 1)[1]
            assert hashlib.sha256((mountpoint / file).read_bytes()).hexdigest() == digest, file
    absent = expected.get(f"{which}_file_absent")
    if absent:
        assert not (mountpoint / absent).exists(), f"{absent} was deleted before {which} and must not be restored"
