"""Snapshots, backups and restores through a running daemon, as users drive them."""

import os
import time
from pathlib import Path

import pytest

from app.mounts import filesystem_type
from tests.backup.treecheck import describe, make_sample_tree
from tests.daemon_harness import cli_json, mounted_points

pytestmark = pytest.mark.needs_root




def fill_volume(daemon, name, **tree_options) -> Path:
    daemon.cli("create", name, check=True)
    directory = daemon.root / "vfs" / name
    directory.rmdir()
    make_sample_tree(directory, **tree_options)
    return directory


def test_backup_on_one_host_restores_on_another(make_daemon, tmp_path):
    store = f"vfs://{tmp_path / 'store'}"
    host_a, host_b = make_daemon(name="a"), make_daemon(name="b")
    source = fill_volume(host_a, "app-data")

    snapshot = host_a.cli("snapshot", "create", "app-data", check=True).stdout.strip()
    assert snapshot.startswith("snapshot-")
    if filesystem_type(host_a.root) in ("ext4", "tmpfs"):  # no reflink there
        assert cli_json(host_a, "snapshot", "inspect", snapshot)["method"] == "copy"
        assert cli_json(host_a, "inspect", "app-data")["backend"]["snapshots"] == "copy"
    url = host_a.cli("backup", "create", snapshot, "--dest", store, check=True).stdout.strip()
    assert url.startswith(store + "?backup=backup-") and url.endswith("&volume=app-data")

    listed = cli_json(host_b, "backup", "list", store, "--volume-name", "app-data")
    assert [b["url"] for b in listed] == [url]
    assert cli_json(host_b, "backup", "inspect", url)["snapshot"] == snapshot
    assert "intact" in host_b.cli("backup", "verify", url, check=True).stdout

    # Convoy's \u0026 spelling of '&' is accepted
    host_b.cli("create", "restored", "--backup", url.replace("&", "\\u0026"), check=True)
    assert describe(host_b.root / "vfs" / "restored") == describe(source)
    volume = cli_json(host_b, "inspect", "restored")
    assert volume["options"]["backup"] == url

    # and through Docker: docker volume create -o backup=URL
    host_b.docker_ok("Create", {"Name": "from-docker", "Opts": {"backup": url}})
    host_b.docker_ok("Create", {"Name": "from-docker", "Opts": {"backup": url}})  # retried: idempotent
    mountpoint = host_b.docker_ok("Mount", {"Name": "from-docker", "ID": "c1"})["Mountpoint"]
    assert describe(mountpoint) == describe(source)


def test_backup_to_s3_through_a_custom_endpoint(make_daemon, s3_endpoint, s3_bucket):
    host_a = make_daemon("--s3-endpoint", s3_endpoint, name="a")  # the daemon's default endpoint
    host_b = make_daemon(name="b")  # no default: the CLI names the endpoint
    source = fill_volume(host_a, "s3vol")
    snapshot = host_a.cli("snapshot", "create", "s3vol", "--name", "before-upgrade", check=True).stdout.strip()
    assert snapshot == "before-upgrade"
    dest = f"s3://{s3_bucket}@us-east-1/convoy"
    url = host_a.cli("backup", "create", snapshot, "--dest", dest, check=True).stdout.strip()
    assert url.startswith(dest + "?backup=")
    host_b.cli("create", "s3copy", "--backup", url, "--s3-endpoint", s3_endpoint, check=True)
    assert describe(host_b.root / "vfs" / "s3copy") == describe(source)


def test_incremental_backup_on_xfs_uses_reflink_snapshots(make_daemon, xfs_dir, tmp_path):
    daemon = make_daemon("--driver-opts", f"vfs.path={xfs_dir}")
    daemon.cli("create", "db", check=True)
    assert cli_json(daemon, "inspect", "db")["backend"]["snapshots"] == "reflink"
    data = xfs_dir / "db" / "data.bin"
    data.write_bytes(os.urandom(64 << 20))
    store = f"vfs://{tmp_path / 'store'}"

    first = daemon.cli("snapshot", "create", "db", check=True).stdout.strip()
    assert cli_json(daemon, "snapshot", "inspect", first)["method"] == "reflink"
    cli_json(daemon, "backup", "create", first, "--dest", store)

    with open(data, "r+b") as f:  # one changed MiB in a 64 MiB file
        f.seek(10 << 20)
        f.write(os.urandom(1 << 20))
    second = daemon.cli("snapshot", "create", "db", check=True).stdout.strip()
    result = cli_json(daemon, "backup", "create", second, "--dest", store)
    assert result["stats"]["read_bytes"] <= 2 << 20, result["stats"]
    daemon.cli("create", "db-restored", "--backup", result["url"], check=True)
    assert (xfs_dir / "db-restored" / "data.bin").read_bytes() == data.read_bytes()


def test_snapshots_hold_their_volume_and_can_be_deleted(daemon):
    daemon.cli("create", "held", check=True)
    snapshot = daemon.cli("snapshot", "create", "held", check=True).stdout.strip()
    assert [s["name"] for s in cli_json(daemon, "snapshot", "list", "held")] == [snapshot]
    result = daemon.cli("delete", "held")
    assert result.returncode == 4 and f"has snapshots ({snapshot})" in result.stderr
    daemon.cli("snapshot", "delete", snapshot, check=True)
    assert daemon.cli("snapshot", "inspect", snapshot).returncode == 3
    daemon.cli("delete", "held", check=True)


def test_backup_delete_keeps_the_others_restorable(daemon, tmp_path):
    store = f"vfs://{tmp_path / 'store'}"
    fill_volume(daemon, "vol")
    urls = []
    for _ in range(2):
        snapshot = daemon.cli("snapshot", "create", "vol", check=True).stdout.strip()
        urls.append(daemon.cli("backup", "create", snapshot, "--dest", store, check=True).stdout.strip())
    daemon.cli("backup", "delete", urls[0], check=True)
    assert [b["url"] for b in cli_json(daemon, "backup", "list", store)] == [urls[1]]
    assert daemon.cli("backup", "inspect", urls[0]).returncode == 3
    daemon.cli("backup", "verify", urls[1], check=True)
    daemon.cli("create", "again", "--backup", urls[1], check=True)
    assert describe(daemon.root / "vfs" / "again") == describe(daemon.root / "vfs" / "vol")


def _big_backup(daemon, tmp_path, size=384 << 20) -> str:
    daemon.cli("create", "big", check=True)
    with open(daemon.root / "vfs" / "big" / "blob", "wb") as f:
        for _ in range(size >> 24):
            f.write(os.urandom(16 << 20))
    snapshot = daemon.cli("snapshot", "create", "big", check=True).stdout.strip()
    return daemon.cli("backup", "create", snapshot, "--dest", f"vfs://{tmp_path / 'store'}", check=True).stdout.strip()


def test_restore_killed_half_way_is_removed_at_the_next_start(daemon, tmp_path):
    url = _big_backup(daemon, tmp_path)
    status, job = daemon.control("POST", "/restores", {"name": "half", "url": url})
    assert status == 202
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = daemon.control("GET", f"/jobs/{job['id']}")[1]
        if job["progress"]["done_bytes"] > 0 or job["state"] != "running":
            break
        time.sleep(0.005)
    assert job["state"] == "running", "the restore must still be running to be killed half-way"
    daemon.kill9()
    assert (daemon.root / "vfs" / "half").exists()

    daemon.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (daemon.root / "vfs" / "half").exists():
        time.sleep(0.05)
    assert not (daemon.root / "vfs" / "half").exists(), "partial data must not be left as a volume"
    assert daemon.cli("inspect", "half").returncode == 3
    assert not any(p.endswith("/half") for p in mounted_points())
    daemon.cli("create", "half", "--backup", url, check=True)
    assert (daemon.root / "vfs" / "half" / "blob").read_bytes() == (daemon.root / "vfs" / "big" / "blob").read_bytes()


def test_docker_restore_past_its_deadline_fails_cleanly_and_points_to_the_cli(make_daemon, tmp_path):
    daemon = make_daemon("--docker-restore-timeout", "0.05")
    url = _big_backup(daemon, tmp_path, size=256 << 20)
    status, data = daemon.docker("Create", {"Name": "slow", "Opts": {"backup": url}})
    assert status != 200
    assert "takes longer than Docker allows" in data["Err"] and "convoy create slow --backup" in data["Err"]
    assert [v["Name"] for v in daemon.docker_ok("List")["Volumes"]] == ["big"]
    assert not (daemon.root / "vfs" / "slow").exists()
    daemon.cli("create", "slow", "--backup", url, check=True)


BAD = [
    (["snapshot", "create", "nosuchvol"], 3, "volume nosuchvol does not exist"),
    (["snapshot", "create", "vol1", "--name", "../x"], 2, "snapshot name '../x' is not valid"),
    (["snapshot", "delete", "nosnap"], 3, "snapshot nosnap does not exist"),
    (["backup", "create", "nosnap", "--dest", "vfs:///tmp/x"], 3, "snapshot nosnap does not exist"),
    (["backup", "list", "ftp://host/x"], 2, "ftp"),
    (["backup", "inspect", "vfs:///tmp/nowhere-at-all?backup=b1&volume=v1"], 3, ""),
    (["backup", "inspect", "vfs:///tmp/x"], 2, "?backup=NAME&volume=VOL"),
    (["create", "r1", "--backup", "vfs:///tmp/x?backup=b1"], 2, "lacks volume"),
]


@pytest.mark.parametrize("args, code, words", BAD, ids=[" ".join(b[0][:2]) + f"-{i}" for i, b in enumerate(BAD)])
def test_bad_backup_requests(daemon, args, code, words):
    daemon.cli("create", "vol1", check=True)
    result = daemon.cli(*args)
    assert result.returncode == code, result.stderr
    assert words in result.stderr
    assert [v["name"] for v in cli_json(daemon, "list")] == ["vol1"], "a refused request creates nothing"


def test_unreachable_s3_endpoint_is_reported(daemon):
    daemon.cli("create", "vol1", check=True)
    snapshot = daemon.cli("snapshot", "create", "vol1", check=True).stdout.strip()
    result = daemon.cli("backup", "create", snapshot, "--dest", "s3://bucket1@us-east-1/p", "--s3-endpoint", "http://127.0.0.1:9")
    assert result.returncode == 5, result.stderr
    assert "127.0.0.1:9" in result.stderr


def test_ctrl_c_on_the_cli_leaves_the_job_running_to_a_good_end(daemon, xfs_root, xfs_dir):
    import signal
    import subprocess

    from app.fs.filesystems import frozen
    from tests.daemon_harness import CONVOY, REPO

    daemon.cli("create", "big", check=True)
    (daemon.root / "vfs" / "big" / "blob").write_bytes(os.urandom(16 << 20))
    snapshot = daemon.cli("snapshot", "create", "big", check=True).stdout.strip()
    store = f"vfs://{xfs_dir / 'store'}"
    # the store's file system stays frozen until the Ctrl-C is handled: the job cannot end first,
    # however slow this machine is
    with frozen(str(xfs_root)):
        # Ctrl-C as at a terminal: a test run started in the background (nohup make test &) ignores
        # SIGINT, and its children inherit that; env resets it before the CLI starts
        cli = subprocess.Popen(
            ["env", "--default-signal=INT", *CONVOY, "--socket", str(daemon.socket), "backup", "create", snapshot,
             "--dest", store],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not daemon.control("GET", "/jobs")[1]["jobs"]:
            time.sleep(0.005)
        cli.send_signal(signal.SIGINT)
        _, stderr = cli.communicate(timeout=30)
        assert cli.returncode == 130 and "goes on in the daemon" in stderr
        job = daemon.control("GET", "/jobs")[1]["jobs"][0]
        assert job["state"] == "running"

    while job["state"] == "running":
        time.sleep(0.05)
        job = daemon.control("GET", f"/jobs/{job['id']}")[1]
    assert job["state"] == "done", job
    assert "intact" in daemon.cli("backup", "verify", job["result"]["url"], check=True).stdout


def test_a_snapshot_half_made_by_a_crash_is_removed_at_the_next_start(daemon):
    daemon.cli("create", "vol", check=True)
    partial = daemon.root / "vfs" / ".convoy" / "snapshots" / "vol" / "snapshot-cut.partial"
    partial.mkdir(parents=True)
    (partial / "file").write_text("half copied")
    daemon.stop()
    daemon.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and partial.exists():
        time.sleep(0.05)
    assert not partial.exists()
    assert cli_json(daemon, "snapshot", "list") == []
