"""Settings merging and size parsing, as users write them."""

from pathlib import Path

import pytest

from app.errors import InvalidInput
from app.settings import load_settings
from app.units import format_size, parse_size


@pytest.mark.parametrize(
    "text, size",
    [
        ("1G", 1 << 30),
        ("10g", 10 << 30),
        ("512M", 512 << 20),
        ("1GiB", 1 << 30),
        ("2T", 2 << 40),
        ("4096", 4096),
        ("1.5G", 3 << 29),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "ten", "-1G", "1X", "0"])
def test_bad_sizes(text):
    with pytest.raises(InvalidInput):
        parse_size(text)


def test_format_size():
    assert [format_size(s) for s in (1 << 30, 512 << 20, None)] == ["1G", "512M", "-"]


def test_defaults():
    settings = load_settings(env={})
    assert settings.drivers == ("vfs", "image") and settings.root == Path("/var/lib/convoy")
    assert settings.mount_root == Path("/var/lib/convoy/mounts")
    assert str(settings.plugin_socket) == "/run/docker/plugins/convoy.sock"
    assert str(settings.socket) == "/run/convoy/convoy.sock"
    assert not settings.create_on_docker_mount and not settings.ignore_docker_delete


def test_env_vars_as_the_plugin_sets_them():
    env = {
        "DRIVER": "vfs",
        "DRIVER_OPTS": "vfs.path=/mnt/nfs vfs.shared=true",
        "CONVOY_ROOT": "/state",
        "CONVOY_MOUNT_ROOT": "/mnt/volumes",
        "CREATE_ON_DOCKER_MOUNT": "true",
        "IGNORE_DOCKER_DELETE": "no",
    }
    settings = load_settings(env=env)
    assert settings.driver_opts == {"vfs.path": "/mnt/nfs", "vfs.shared": "true"}
    assert settings.root == Path("/state") and settings.mount_root == Path("/mnt/volumes")
    assert settings.create_on_docker_mount and not settings.ignore_docker_delete


def test_flags_win_over_env_vars():
    env = {"DRIVER_OPTS": "vfs.path=/from/env", "CONVOY_ROOT": "/env-root"}
    settings = load_settings(driver_opts=["vfs.path=/from/flag"], root="/flag-root", env=env)
    assert settings.driver_opts["vfs.path"] == "/from/flag" and settings.root == Path("/flag-root")


def test_bad_boolean_env_var_is_named():
    with pytest.raises(InvalidInput, match="IGNORE_DOCKER_DELETE='maybe' is not a boolean"):
        load_settings(env={"IGNORE_DOCKER_DELETE": "maybe"})


def test_default_size_from_the_environment():
    assert load_settings(env={"DEFAULT_SIZE": "10G"}).default_size == 10 << 30
    assert load_settings(env={"DEFAULT_SIZE": ""}).default_size is None  # Docker passes unset settings as ""
    with pytest.raises(InvalidInput, match="default size: size 'big' is not a size"):
        load_settings(env={"DEFAULT_SIZE": "big"})


def test_relative_paths_are_made_absolute_at_start(tmp_path, monkeypatch):
    """Docker needs absolute mount points; a relative --mount-root would hand it `mounts/NAME`."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(root="state", mount_root="./mnt", socket="run/c.sock", plugin_socket="p.sock", env={})
    assert settings.root == tmp_path / "state"
    assert settings.mount_root == tmp_path / "mnt"
    assert settings.socket == tmp_path / "run" / "c.sock"
    assert settings.plugin_socket == tmp_path / "p.sock"
