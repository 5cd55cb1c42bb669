"""Backups written by rancher/convoy 0.5.2 restore byte for byte (vfs:// and s3://)."""

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from app.backup import inspect_backup, list_backups, restore_backup, restore_image, verify_backup
from app.backup.objectstore import open_store
from app.errors import Conflict
from tests.convoy_dm_fixture import expected_values

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # copies of shared/fixtures: a clone alone passes
VFS_FIXTURE = Path(os.environ.get("CONVOY_VFS_FIXTURE", FIXTURES / "convoy-0.5.2-vfs-backup"))
DM_FIXTURE = Path(os.environ.get("CONVOY_DM_FIXTURE", FIXTURES / "convoy-0.5.2-devicemapper-backup"))
VFS_URL = "vfs://{dest}?backup=backup-90df2b1db9084d50\\u0026volume=fixvol"  # as Convoy printed it


def need(path: Path) -> Path:
    if not path.is_dir():
        pytest.fail(f"fixture {path} is missing (tests/fixtures/ is part of the repository)")
    return path


def find_listing(root: Path) -> str:
    out = subprocess.run(
        ["find", ".", "-printf", "%y %m %s %p %l\\n"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    # directory sizes depend on the file system, as in the fixture's note they are 4096 on ext4
    lines = []
    for line in out.splitlines():
        kind, mode, size, rest = line.split(" ", 3)
        lines.append(" ".join([kind, mode, "4096" if kind == "d" else size, rest]))
    return "\n".join(sorted(lines, key=lambda line: line.encode()))


def expected_listing() -> str:
    lines = (need(VFS_FIXTURE) / "expected-tree.txt").read_text().splitlines()
    return "\n".join(sorted(lines, key=lambda line: line.encode()))


def check_restored(target: Path) -> None:
    assert find_listing(target) == expected_listing()
    for line in (VFS_FIXTURE / "expected-sha256.txt").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((target / name).read_bytes()).hexdigest() == digest, name
    assert (target / "docs" / "hello.txt").stat().st_mtime == 1577934245  # 2020-01-02 03:04:05 UTC, as archived


def test_convoy_vfs_backup_restores_byte_for_byte(tmp_path):
    fixture = need(VFS_FIXTURE)
    url = VFS_URL.format(dest=fixture)
    info = inspect_backup(url)
    assert (info["volume"], info["snapshot"], info["format"]) == ("fixvol", "fixsnap", "convoy-0.5.2")
    listed = list_backups(f"vfs://{fixture}")
    assert [r["url"] for r in listed] == [url.replace("\\u0026", "&")]
    assert verify_backup(url)["ok"]
    restore_backup(url, str(tmp_path / "restored"))
    check_restored(tmp_path / "restored")


def test_convoy_vfs_backup_restores_from_s3(tmp_path, s3_endpoint, s3_bucket):
    fixture = need(VFS_FIXTURE)
    store = open_store(f"s3://{s3_bucket}@us-east-1/convoy", s3_endpoint=s3_endpoint)
    for path in (fixture / "convoy-objectstore").rglob("*"):
        if path.is_file():
            store.put(str(path.relative_to(fixture)), path.read_bytes())
    url = f"s3://{s3_bucket}@us-east-1/convoy?backup=backup-90df2b1db9084d50\\u0026volume=fixvol"
    restore_backup(url, str(tmp_path / "restored"), s3_endpoint=s3_endpoint)
    check_restored(tmp_path / "restored")
    with pytest.raises(Conflict):  # read, never modified
        from app.backup import delete_backup

        delete_backup(url, s3_endpoint=s3_endpoint)


def read_expected_dm() -> dict:
    return expected_values(need(DM_FIXTURE))


@pytest.mark.parametrize("which", ["backup1", "backup2"])
def test_convoy_devicemapper_backup_restores_to_the_same_image(tmp_path, which):
    expected = read_expected_dm()
    url = expected[f"{which}_url_printed"].replace("DEST", str(DM_FIXTURE))
    image = tmp_path / "dm.img"
    restore_image(url, str(image))
    assert image.stat().st_size == int(expected["volume_size"])
    assert hashlib.sha256(image.read_bytes()).hexdigest() == expected[f"{which}_image_sha256"]


def test_convoy_devicemapper_backups_are_listed_and_verified(tmp_path):
    import shutil

    expected = read_expected_dm()
    listed = list_backups(f"vfs://{DM_FIXTURE}")
    assert sorted(r["name"] for r in listed) == sorted([expected["backup1_name"], expected["backup2_name"]])
    assert {r["source"] for r in listed} == {"blocks"}
    url = expected["backup1_url_printed"].replace("DEST", str(DM_FIXTURE))
    report = verify_backup(url)
    assert report["ok"] and report["blocks"] == int(expected["backup1_cfg_unique_checksums"])

    # a damaged copy is reported, and a restore of it stops
    copy = tmp_path / "copy"
    shutil.copytree(DM_FIXTURE / "convoy-objectstore", copy / "convoy-objectstore")
    import json

    cfg = json.loads(next((copy / "convoy-objectstore").rglob(f"backup_{expected['backup2_name']}.cfg")).read_text())
    checksum = cfg["Blocks"][0]["BlockChecksum"]
    victim = next((copy / "convoy-objectstore").rglob(f"{checksum}.blk"))
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:1000])
    damaged = verify_backup(expected["backup2_url_printed"].replace("DEST", str(copy)))
    assert not damaged["ok"] and victim.name[:-4] in damaged["problems"][0]
    assert "damaged" in damaged["message"] and victim.name[:-4] in damaged["message"]
