"""Start-up, shutdown and recovery of the daemon: what survives kill -9 and what is refused."""

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon, mounted_points, mountinfo_lines

pytestmark = pytest.mark.needs_root


def test_kill9_with_mounted_volumes_then_restart_restores_exactly_the_referenced_mounts(daemon):
    for name in ("kept", "released", "lost"):
        daemon.docker_ok("Create", {"Name": name})
    kept = daemon.docker_ok("Mount", {"Name": "kept", "ID": "c1"})["Mountpoint"]
    Path(kept, "data").write_text("before the crash")
    released = daemon.docker_ok("Mount", {"Name": "released", "ID": "c2"})["Mountpoint"]
    lost = daemon.docker_ok("Mount", {"Name": "lost", "ID": "c3"})["Mountpoint"]
    daemon.docker_ok("Unmount", {"Name": "released", "ID": "c2"})

    daemon.kill9()
    # What a crash or reboot can leave: a mount that vanished, and a mount
    # nobody references any more (made just before the crash).
    subprocess.run(["umount", lost], check=True)
    subprocess.run(["mount", "--bind", str(daemon.root / "vfs" / "released"), released], check=True)
    assert lost not in mounted_points() and released in mounted_points()

    daemon.start()
    daemon.docker_ok("List")  # mounts are reconciled in the background; a Mount waits for it
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (lost in mounted_points() and released not in mounted_points()):
        time.sleep(0.05)
    assert lost in mounted_points(), "a referenced mount must exist again"
    assert released not in mounted_points(), "an unreferenced mount must not leak"
    assert kept in mounted_points()
    assert Path(kept, "data").read_text() == "before the crash"
    assert sum(1 for p in mountinfo_lines() if p.split(" ")[4] == kept) == 1, "no double mount"

    # the references survived: the next Unmounts are handled as before the crash
    daemon.docker_ok("Unmount", {"Name": "kept", "ID": "c1"})
    daemon.docker_ok("Unmount", {"Name": "lost", "ID": "c3"})
    assert kept not in mounted_points() and lost not in mounted_points()


DOCKER_DIALS_FOR = 12.0  # Docker dials a managed plugin's socket for about 12 s, then gives up on it


def test_sockets_listen_within_dockers_dial_window_and_control_socket_is_private(make_daemon):
    """Within Docker's window, not "fast": benchmarks/cli_latency.py measures the start (about 0.6 s)."""
    daemon = make_daemon(start=False)
    daemon.start(wait=False)
    assert daemon.wait_listening(timeout=30) < DOCKER_DIALS_FOR
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600


def test_second_daemon_on_the_same_root_is_refused_and_names_the_holder(daemon, tmp_path):
    other = Daemon(daemon.base)
    other.plugin_socket = tmp_path / "other-plugin.sock"
    other.socket = tmp_path / "other.sock"
    result = subprocess.run(other.args(), capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"another convoy daemon (pid {daemon.process.pid}) is using {daemon.root}" in result.stderr
    daemon.docker_ok("List")  # the first one is unharmed


def test_stale_socket_files_are_replaced(make_daemon):
    daemon = make_daemon()
    daemon.kill9()
    assert daemon.plugin_socket.exists() and daemon.socket.exists()  # left behind by kill -9
    daemon.start()
    daemon.docker_ok("List")


def test_sigterm_shuts_down_cleanly_and_keeps_mounts(daemon):
    daemon.docker_ok("Create", {"Name": "inuse"})
    mountpoint = daemon.docker_ok("Mount", {"Name": "inuse", "ID": "c"})["Mountpoint"]
    assert daemon.stop() == 0
    assert "stopped" in daemon.log_text()
    assert not daemon.socket.exists() and not daemon.plugin_socket.exists()
    assert mountpoint in mounted_points(), "containers keep their volumes while the plugin restarts"


def test_a_changed_vfs_path_with_volumes_in_the_old_one_stops_the_start(make_daemon, tmp_path):
    old_path, new_path = tmp_path / "old", tmp_path / "new"
    daemon = make_daemon("--driver-opts", f"vfs.path={old_path}")
    daemon.docker_ok("Create", {"Name": "vol1"})
    daemon.docker_ok("Create", {"Name": "vol2"})
    daemon.stop()

    result = subprocess.run(
        [*daemon.args()[:-2], "--driver-opts", f"vfs.path={new_path}"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "vol1 lives in" in result.stderr and "vol2 lives in" in result.stderr
    assert f"vfs.path={new_path}" not in result.stderr and "vfs.path=<old path>" in result.stderr
    # the host's CLI tells why the daemon is not there (through the plugin, Docker cannot)
    told = daemon.cli("list")
    assert told.returncode == 5 and "refused to start" in told.stderr and "vol1 lives in" in told.stderr

    # moving the data to the new path is the other way out
    new_path.mkdir()
    for name in ("vol1", "vol2"):
        (old_path / name).rename(new_path / name)
    daemon.extra_args = ["--driver-opts", f"vfs.path={new_path}"]
    daemon.start()
    assert [v["Name"] for v in daemon.docker_ok("List")["Volumes"]] == ["vol1", "vol2"]
    daemon.docker_ok("Mount", {"Name": "vol1", "ID": "x"})
    assert daemon.cli("list").returncode == 0


def test_settings_come_from_env_vars_and_flags_win(make_daemon, tmp_path):
    env_path, flag_path = tmp_path / "from-env", tmp_path / "from-flag"
    daemon = make_daemon(env={"DRIVER_OPTS": f"vfs.path={env_path}", "IGNORE_DOCKER_DELETE": "true"}, name="env")
    daemon.docker_ok("Create", {"Name": "e1"})
    assert (env_path / "e1").is_dir()
    daemon.docker_ok("Remove", {"Name": "e1"})
    assert (env_path / "e1").is_dir(), "IGNORE_DOCKER_DELETE=true from the environment is honoured"

    flagged = make_daemon("--driver-opts", f"vfs.path={flag_path}", env={"DRIVER_OPTS": f"vfs.path={env_path}"}, name="flag")
    flagged.docker_ok("Create", {"Name": "f1"})
    assert (flag_path / "f1").is_dir() and not (env_path / "f1").exists()

    sized = make_daemon(env={"DEFAULT_SIZE": "5G"}, name="sized")
    sized.docker_ok("Create", {"Name": "d1"})
    sized.docker_ok("Create", {"Name": "d2", "Opts": {"size": "1G"}})
    assert sized.docker_ok("Get", {"Name": "d1"})["Volume"]["Status"]["size"] == "5G"
    assert sized.docker_ok("Get", {"Name": "d2"})["Volume"]["Status"]["size"] == "1G"
