"""`convoy daemon`: claim the root, bind both sockets, then do the slow work.

Docker dials the plugin socket 0.5 s after start and gives up after about
12 s, and calls Get for every volume right away, so the sockets listen
before any scan or mount recovery; Get and List answer from the catalog.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import stat
import sys
import threading
from pathlib import Path

from app import logs
from app.catalog import Catalog, VolumeRecord
from app.control_socket import start_error_file
from app.errors import ConfigurationError, ConvoyError
from app.private_dirs import make_private
from app.settings import Settings
from app.storage.driver import StorageDriver
from app.storage.registry import build_driver, option_prefix

log = logging.getLogger("convoy")

CATALOG_FILE = "catalog.db"
LOCK_FILE = "daemon.lock"


def acquire_root_lock(root: Path) -> int:
    """Hold an exclusive lock on the root for the daemon's life; the kernel drops it on any exit."""
    make_private(root)  # volume data, snapshots and the catalog live below: root's alone
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigurationError(
            f"another convoy daemon (pid {holder}) is using {root}; stop it first, or start this one with another --root"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def bind_unix_socket(path: Path, mode: int) -> socket.socket:
    """Listen on `path`, replacing a stale socket file but never a live one, nor anything else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):  # a user's file, a directory, a link: not ours to delete
            raise ConfigurationError(
                f"{path} exists and is not a socket; convoy replaces only a socket left by a stopped daemon: "
                "move it away or choose another socket path"
            )
        if _someone_listens(path):
            raise ConfigurationError(f"{path} is in use by another process; stop it or choose another socket path")
        path.unlink()  # nobody answers: a leftover of a killed daemon
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # no window in which the socket is open to others
    try:
        sock.bind(str(path))
    except OSError as err:
        sock.close()
        raise ConfigurationError(f"cannot listen on {path}: {os.strerror(err.errno or errno.EIO)}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    sock.listen(512)
    sock.setblocking(False)
    return sock


def bind_tcp_socket(address: tuple[str, int], setting: str) -> socket.socket:
    """Listen on a TCP address (its first resolution); a name that does not resolve or a port
    already taken stops the start with the setting to change."""
    host, port = address
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise ConfigurationError(f"{setting} {host}:{port}: cannot resolve {host} ({err.strerror}); give an IP address") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(64)
    except OSError as err:
        sock.close()
        raise ConfigurationError(
            f"{setting} {host}:{port}: cannot listen there ({os.strerror(err.errno or errno.EIO)}); "
            "choose another port or address, or leave it unset to serve /metrics on the control socket only"
        ) from None
    sock.setblocking(False)
    return sock


def build_drivers(settings: Settings, records: list[VolumeRecord]) -> dict[str, StorageDriver]:
    """The enabled drivers, plus any driver existing volumes use, so none of them disappears."""
    names = list(settings.drivers)
    for record in records:
        if record.driver not in names:
            log.warning("loading driver %s too: volume %s uses it", record.driver, record.name)
            names.append(record.driver)
    return {name: build_driver(name, settings.options_for(option_prefix(name)), settings.root) for name in names}


def check_volumes_reachable(records: list[VolumeRecord], drivers: dict[str, StorageDriver]) -> None:
    """Stop the start when a changed setting would hide existing volumes."""
    problems = []
    for record in records:
        problem = drivers[record.driver].settings_problem(record.ref())
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigurationError(
            "the current settings cannot reach these volumes: "
            + "; ".join(problems)
            + ". Start again with the settings they were created with (for example --driver-opts "
            "vfs.path=<old path>), or move their data to the new location first"
        )


def check_mount_root_apart(settings: Settings, drivers: dict[str, StorageDriver]) -> None:
    """The mount root shares no directory with the stores: a volume named like an entry there would be mounted over it."""
    mount_root = Path(os.path.realpath(settings.mount_root))
    stores = [("--root", settings.root)] + [
        (f"the {name} driver's storage", path) for name, driver in drivers.items() for path in driver.private_paths()
    ]
    for what, path in stores:
        store = Path(os.path.realpath(path))
        if mount_root == store or store.is_relative_to(mount_root) or (what != "--root" and mount_root.is_relative_to(store)):
            raise ConfigurationError(
                f"--mount-root {settings.mount_root} overlaps {what} {path}: a volume could be mounted over "
                f"convoy's own files; give them separate directories (the default mount root is <root>/mounts)"
            )


def run(settings: Settings) -> None:
    logs.configure(settings.log_format, os.environ.get("CONVOY_LOG_LEVEL", "INFO"))
    lock_fd = acquire_root_lock(settings.root)
    catalog = Catalog(settings.root / CATALOG_FILE)
    records = catalog.all()  # read once: thousands of volumes are checked before the sockets listen
    drivers = build_drivers(settings, records)
    check_volumes_reachable(records, drivers)
    check_mount_root_apart(settings, drivers)
    # first: a bad address stops the start before any socket file is made
    metrics_socket = bind_tcp_socket(settings.metrics_addr, "--metrics-addr") if settings.metrics_addr else None
    # Docker connects as root: no group (not even root's) needs the socket
    plugin_socket = bind_unix_socket(settings.plugin_socket, 0o600)
    control_socket = bind_unix_socket(settings.socket, 0o600)
    start_error_file(settings.socket).unlink(missing_ok=True)
    log.info("listening on %s (Docker) and %s (control)", settings.plugin_socket, settings.socket)
    if settings.metrics_addr:
        log.info("serving /metrics on %s:%d too", *settings.metrics_addr)

    from app.server import serve  # imports the web stack after the sockets listen
    from app.service import VolumeService

    service = VolumeService(settings, drivers, catalog)
    start_up = threading.Thread(target=service.start, name="start-up", daemon=True)
    try:
        serve(service, plugin_socket, control_socket, when_serving=start_up.start, metrics_socket=metrics_socket)
    finally:
        for path in (settings.plugin_socket, settings.socket):
            path.unlink(missing_ok=True)
        catalog.close()
        os.close(lock_fd)
    log.info("stopped")


def main(settings: Settings) -> int:
    try:
        run(settings)
    except ConvoyError as error:
        log.error("%s", error)
        if settings.log_format != "json":  # a json log stays one object a line: the line above says it
            print(f"convoy daemon: {error}", flush=True, file=sys.stderr)
        _leave_start_error(settings, error)
        return 1
    return 0


def _someone_listens(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _leave_start_error(settings: Settings, error: ConvoyError) -> None:
    """Leave the reason where the host's CLI finds it, unless another daemon serves that socket."""
    if _someone_listens(settings.socket):
        return
    try:
        settings.socket.parent.mkdir(parents=True, exist_ok=True)
        start_error_file(settings.socket).write_text(f"{error}\n")
    except OSError:
        pass  # the message is in the log either way
