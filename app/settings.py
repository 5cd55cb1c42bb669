"""Daemon settings: every one comes from a flag or an env var of the same meaning.

The managed plugin can only change env vars (`docker plugin set`), the CLI
user types flags; both reach the same `Settings`. Flags win over env vars,
env vars over defaults. Settings are read on every start (Convoy froze them
after the first start: rancher/convoy#16, #103).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from app.control_socket import DEFAULT_CONTROL_SOCKET
from app.errors import InvalidInput
from app.key_values import parse_key_values

T = TypeVar("T")

DEFAULT_ROOT = "/var/lib/convoy"
# the first is the default back-end; image needs nothing but loop devices, so it is always there
DEFAULT_DRIVERS = ("vfs", "image")
DEFAULT_PLUGIN_SOCKET = "/run/docker/plugins/convoy.sock"

# setting name -> env var that carries the same meaning
ENV_VARS = {
    "drivers": "DRIVER",
    "driver_opts": "DRIVER_OPTS",
    "root": "CONVOY_ROOT",
    "plugin_socket": "CONVOY_PLUGIN_SOCKET",
    "socket": "CONVOY_SOCKET",
    "mount_root": "CONVOY_MOUNT_ROOT",
    "create_on_docker_mount": "CREATE_ON_DOCKER_MOUNT",
    "ignore_docker_delete": "IGNORE_DOCKER_DELETE",
    "default_size": "DEFAULT_SIZE",
    "s3_endpoint": "S3_ENDPOINT",
    "docker_restore_timeout": "DOCKER_RESTORE_TIMEOUT",
    "shared_refresh": "SHARED_REFRESH",
    # metrics and logs
    "metrics_addr": "METRICS_ADDR",
    "log_format": "LOG_FORMAT",
}
# Docker gives a volume create 2 minutes; a restore through it must answer before
DEFAULT_DOCKER_RESTORE_TIMEOUT = 100.0
# how often volumes recorded on shared storage (NFS, a cloud) are read again
DEFAULT_SHARED_REFRESH = 30.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    drivers: tuple[str, ...] = DEFAULT_DRIVERS
    driver_opts: dict[str, str] = field(default_factory=dict)
    root: Path = Path(DEFAULT_ROOT)
    plugin_socket: Path = Path(DEFAULT_PLUGIN_SOCKET)
    socket: Path = Path(DEFAULT_CONTROL_SOCKET)
    mount_root: Path = Path(DEFAULT_ROOT) / "mounts"
    create_on_docker_mount: bool = False
    ignore_docker_delete: bool = False
    default_size: int | None = None  # bytes, for volumes created without a size
    s3_endpoint: str | None = None  # default endpoint for s3:// (MinIO, Ceph); None: AWS
    docker_restore_timeout: float = DEFAULT_DOCKER_RESTORE_TIMEOUT
    shared_refresh: float = DEFAULT_SHARED_REFRESH  # seconds
    # metrics and logs
    metrics_addr: tuple[str, int] | None = None  # (host, port) that also serves /metrics over TCP
    log_format: str = "text"  # or json: one object a line

    @property
    def default_driver(self) -> str:
        return self.drivers[0]

    def options_for(self, driver: str) -> dict[str, str]:
        """The `--driver-opts` of one driver: keys `DRIVER.rest` (Convoy's spelling)."""
        prefix = driver + "."
        return {k: v for k, v in self.driver_opts.items() if k.startswith(prefix)}


def _split_list(text: str) -> list[str]:
    """Env vars hold lists separated by commas or whitespace."""
    return [part for part in re.split(r"[,\s]+", text.strip()) if part]


def _parse_bool(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidInput(f"{name}={text!r} is not a boolean: use true or false")


def _absolute(path: str) -> Path:
    """Paths are made absolute once, at start: Docker needs absolute mount
    points, and a path must not change meaning with the working directory."""
    return Path(os.path.abspath(path))


def load_settings(
    *,
    drivers: list[str] | None = None,
    driver_opts: list[str] | None = None,
    root: str | None = None,
    plugin_socket: str | None = None,
    socket: str | None = None,
    mount_root: str | None = None,
    create_on_docker_mount: bool | None = None,
    ignore_docker_delete: bool | None = None,
    default_size: str | None = None,
    s3_endpoint: str | None = None,
    docker_restore_timeout: float | None = None,
    shared_refresh: float | None = None,
    metrics_addr: str | None = None,
    log_format: str | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Merge flags (arguments that are not None) over env vars over defaults."""
    env = dict(os.environ if env is None else env)

    def pick(flag: T | None, name: str) -> T | str | None:
        if flag is not None:
            return flag
        return env.get(ENV_VARS[name]) or None

    driver_list = drivers or _split_list(env.get(ENV_VARS["drivers"], "")) or list(DEFAULT_DRIVERS)
    opts_env = parse_key_values(_split_list(env.get(ENV_VARS["driver_opts"], "")), ENV_VARS["driver_opts"])
    opts_flag = parse_key_values(driver_opts or [], "--driver-opts")
    root_path = _absolute(pick(root, "root") or DEFAULT_ROOT)
    mount_root_value = pick(mount_root, "mount_root")

    def pick_bool(flag: bool | None, name: str) -> bool:
        if flag:  # typer gives False when the flag is absent
            return True
        raw = env.get(ENV_VARS[name])
        return _parse_bool(raw, ENV_VARS[name]) if raw is not None else False

    return Settings(
        drivers=tuple(dict.fromkeys(driver_list)),
        driver_opts={**opts_env, **opts_flag},
        root=root_path,
        plugin_socket=_absolute(pick(plugin_socket, "plugin_socket") or DEFAULT_PLUGIN_SOCKET),
        socket=_absolute(pick(socket, "socket") or DEFAULT_CONTROL_SOCKET),
        mount_root=_absolute(mount_root_value) if mount_root_value else root_path / "mounts",
        create_on_docker_mount=pick_bool(create_on_docker_mount, "create_on_docker_mount"),
        ignore_docker_delete=pick_bool(ignore_docker_delete, "ignore_docker_delete"),
        default_size=_parse_default_size(pick(default_size, "default_size")),
        s3_endpoint=pick(s3_endpoint, "s3_endpoint"),
        docker_restore_timeout=_parse_seconds(pick(docker_restore_timeout, "docker_restore_timeout")),
        shared_refresh=_parse_interval(pick(shared_refresh, "shared_refresh")),
        metrics_addr=_parse_host_port(pick(metrics_addr, "metrics_addr")),
        log_format=_parse_log_format(pick(log_format, "log_format")),
    )


def _parse_default_size(value: str | None) -> int | None:
    if value is None:
        return None
    from app.units import parse_size  # here: the CLI imports this module for its defaults alone

    try:
        return parse_size(value)
    except InvalidInput as error:
        raise InvalidInput(f"default size: {error}") from None


def _parse_seconds(value: float | str | None) -> float:
    if value is None:
        return DEFAULT_DOCKER_RESTORE_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidInput(f"{ENV_VARS['docker_restore_timeout']}={value!r} is not a number of seconds") from None
    if not 0 < seconds <= 115:
        raise InvalidInput(f"docker restore timeout {value} must be between 0 and 115 seconds (Docker allows 120)")
    return seconds


def _parse_interval(value: object) -> float:
    if value is None:
        return DEFAULT_SHARED_REFRESH
    try:
        seconds = float(str(value))
    except ValueError:
        raise InvalidInput(f"{ENV_VARS['shared_refresh']}={value!r} is not a number of seconds") from None
    if not 0.1 <= seconds <= 3600:
        raise InvalidInput(f"shared refresh interval {value} must be between 0.1 and 3600 seconds")
    return seconds


def _parse_host_port(value: str | None) -> tuple[str, int] | None:
    """`HOST:PORT` (an IPv6 address in brackets: `[::1]:9100`); the host is required, so that serving
    metrics to every interface (0.0.0.0) is a choice written down, never a default."""
    if value is None:
        return None
    example = "give HOST:PORT, e.g. 127.0.0.1:9100 (0.0.0.0:9100 for every interface)"
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"metrics address {value!r} ({ENV_VARS['metrics_addr']} or --metrics-addr) is not valid: {example}")
    return host, int(port)


def _parse_log_format(value: str | None) -> str:
    if value is None:
        return "text"
    from app.logs import check_format

    return check_format(value.strip().lower(), f"{ENV_VARS['log_format']} or --log-format")
