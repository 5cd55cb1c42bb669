"""Run a real `convoy daemon` in a subprocess and talk to it over its real sockets."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONVOY = [sys.executable, "-m", "app"]


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the control and plugin sockets), for requests a test shapes itself."""

    def __init__(self, path: str | Path, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def http_call(sock_path, method: str, path: str, body=None, raw: bytes | None = None):
    """(status, decoded JSON) of one request over a Unix socket."""
    connection = UnixHTTPConnection(sock_path, timeout=30)
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, path, body=payload)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, (json.loads(data) if data else {})


def wait_until(condition, seconds: float = 15.0) -> bool:
    """Whether `condition()` became true within `seconds` (polled)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def mountinfo_lines() -> list[str]:
    with open("/proc/self/mountinfo") as info:
        return info.readlines()


def mounted_points() -> set[str]:
    return {line.split(" ")[4] for line in mountinfo_lines()}


class Daemon:
    """One daemon with its own root: a 'host' for the tests."""

    def __init__(self, base: Path, *extra_args: str, env: dict | None = None):
        self.base = base
        self.root = base / "root"
        self.plugin_socket = base / "run" / "plugin.sock"
        self.socket = base / "run" / "convoy.sock"
        self.mount_root = base / "mounts"
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = base / "daemon.log"

    def args(self) -> list[str]:
        return [
            *CONVOY,
            "daemon",
            "--root", str(self.root),
            "--plugin-socket", str(self.plugin_socket),
            "--socket", str(self.socket),
            "--mount-root", str(self.mount_root),
            *self.extra_args,
        ]

    def start(self, wait: bool = True, *extra_args: str) -> Daemon:
        env = {k: v for k, v in os.environ.items() if k not in ("DRIVER", "DRIVER_OPTS", "CONVOY_SOCKET")}
        env.update(self.env)
        self.base.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - the daemon's stdout for as long as it runs
        self.process = subprocess.Popen(
            self.args() + list(extra_args), cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout: float = 30.0) -> float:
        """Seconds until both sockets accept a request."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                http_call(self.plugin_socket, "POST", "/VolumeDriver.Capabilities", {})
                http_call(self.socket, "GET", "/v1/info")
                return time.monotonic() - started
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"daemon did not listen within {timeout} s:\n{self.log_text()}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until start-up recovery (remounts, releases, the first read of shared records) has run."""
        deadline = time.monotonic() + timeout
        while True:
            status, info = self.control("GET", "/info")
            if status == 200 and info.get("ready"):
                return
            assert time.monotonic() < deadline, f"not ready after {timeout} s: {info}"
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def docker(self, method: str, body: dict | None = None):
        """A Docker VolumeDriver call: (status, JSON)."""
        return http_call(self.plugin_socket, "POST", f"/VolumeDriver.{method}", body or {})

    def docker_ok(self, method: str, body: dict | None = None) -> dict:
        status, data = self.docker(method, body)
        assert status == 200 and not data.get("Err"), f"{method} {body}: {status} {data}"
        return data

    def control(self, method: str, path: str, body=None):
        return http_call(self.socket, method, "/v1" + path, body)

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*CONVOY, "--socket", str(self.socket), *args], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        if check:
            assert result.returncode == 0, f"convoy {' '.join(args)}: {result.returncode}\n{result.stderr}"
        return result

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode if self.process else 0

    def cleanup_mounts(self) -> None:
        """Unmount anything a test left under this daemon's directories."""
        prefix = str(self.base) + "/"
        for point in sorted(mounted_points(), reverse=True):
            if point.startswith(prefix):
                subprocess.run(["umount", "-l", point], check=False)


def in_process_service(base: Path):
    """A VolumeService on a VFS driver in this process, for tests that make one step fail
    (monkeypatch) where a real daemon could not be steered: (service, driver, catalog, settings)."""
    from app.catalog import Catalog
    from app.service import VolumeService
    from app.settings import load_settings
    from app.storage.registry import build_driver

    settings = load_settings(root=str(base / "root"), mount_root=str(base / "mounts"), env={})
    catalog = Catalog(settings.root / "catalog.db")
    driver = build_driver("vfs", {}, settings.root)
    service = VolumeService(settings, {"vfs": driver}, catalog)
    service.start()
    service.shared.stop()  # no background reads of shared records behind a test's back
    return service, driver, catalog, settings


def cli_json(daemon, *args: str):
    """`convoy ARGS --json` against `daemon` (anything with a `cli` like Daemon's), which must succeed: its document."""
    result = daemon.cli(*args, "--json")
    assert result.returncode == 0, f"convoy {' '.join(args)}: {result.stderr}"
    return json.loads(result.stdout)
