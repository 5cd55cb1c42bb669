"""The daemon replaces only a socket nobody answers on, never a user's file."""

import os
import socket
import subprocess

import pytest

pytestmark = pytest.mark.needs_root


def plant_file(path):
    path.write_text("a user's notes\n")
    return lambda: path.read_text() == "a user's notes\n"


def plant_dir(path):
    path.mkdir()
    (path / "inside").write_text("kept")
    return lambda: (path / "inside").read_text() == "kept"


def plant_link(path):
    target = path.parent / "link-target"
    target.write_text("kept")
    path.symlink_to(target)
    return lambda: path.is_symlink() and target.read_text() == "kept"


@pytest.mark.parametrize("which", ["socket", "plugin_socket"])
@pytest.mark.parametrize("plant", [plant_file, plant_dir, plant_link], ids=["file", "directory", "symlink"])
def test_a_file_at_a_socket_path_stops_the_start_and_is_kept(make_daemon, which, plant):
    daemon = make_daemon(start=False)
    path = getattr(daemon, which)
    path.parent.mkdir(parents=True)
    intact = plant(path)
    result = subprocess.run(daemon.args(), capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode != 0
    assert f"{path} exists and is not a socket" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert intact(), "the daemon must not delete what it did not make"


def test_a_live_socket_of_another_program_is_kept(make_daemon):
    daemon = make_daemon(start=False)
    daemon.plugin_socket.parent.mkdir(parents=True)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(daemon.plugin_socket))
    other.listen(1)
    try:
        result = subprocess.run(daemon.args(), capture_output=True, text=True, timeout=20, check=False)
        assert result.returncode != 0 and "is in use by another process" in result.stderr
        assert daemon.plugin_socket.exists()
    finally:
        other.close()


def test_a_dead_socket_is_replaced(make_daemon):
    daemon = make_daemon(start=False)
    daemon.socket.parent.mkdir(parents=True)
    for path in (daemon.socket, daemon.plugin_socket):
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(path))
        dead.close()  # the file stays, nobody answers
    daemon.start()
    daemon.docker_ok("List")
    assert os.stat(daemon.socket).st_mode & 0o777 == 0o600
