"""What an emulator process and its test client share: loopback HTTP servers run in threads, the ticker thread that
moves the cloud's states, and the admin API's JSON client.

Every server binds 127.0.0.1 only: an emulator accepts any signature or serves a fixed token, so it must never be
reachable from another host.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
ADMIN_TIMEOUT = 10


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1:port whose handlers reach their emulator as `self.server.lab`."""

    daemon_threads = True

    def __init__(self, port: int, handler, lab: Any):
        super().__init__((HOST, port), handler)
        self.lab = lab


class Servers:
    """The servers of one emulator process and its ticker: each in a daemon thread, all stopped together."""

    def __init__(self, log: logging.Logger):
        self.log = log
        self.running: list[ThreadingHTTPServer] = []
        self._stop = threading.Event()

    def serve(self, server: ThreadingHTTPServer) -> ThreadingHTTPServer:
        self.running.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        return server

    def retire(self, server: ThreadingHTTPServer) -> None:
        """Stop one server (e.g. a metadata service asked to move to another port)."""
        server.shutdown()
        server.server_close()
        self.running.remove(server)

    def tick_every(self, seconds: float, tick: Callable[[], None], name: str) -> None:
        def loop() -> None:
            while not self._stop.wait(seconds):
                try:
                    tick()
                except Exception:  # the ticker must outlive one bad tick; the log says what failed
                    self.log.exception("tick failed")

        threading.Thread(target=loop, name=name, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for server in self.running:
            server.shutdown()
            server.server_close()


class AdminError(Exception):
    """The admin API refused a request (its status and answer are in the message)."""


def admin_call(endpoint: str, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One JSON call to an emulator's admin API: `route` is under ENDPOINT/_lab/."""
    data = json.dumps(body or {}).encode() if method == "POST" else None
    request = urllib.request.Request(f"{endpoint.rstrip('/')}/_lab/{route}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as e:
        raise AdminError(f"{method} /_lab/{route}: {e.code} {e.read().decode(errors='replace')}") from None


class LabAdminClient:
    """What every emulator's admin client has: its endpoint, one JSON call, the state and the calls received.
    Each lab subclasses it with its own faults."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint.rstrip("/")

    def _call(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return admin_call(self.endpoint, method, route, body)

    def state(self) -> dict[str, Any]:
        return self._call("GET", "state")

    def calls(self) -> list[str]:
        return self._call("GET", "calls")["calls"]


def serve_until_signalled(stop: Callable[[], None]) -> int:
    """Block until SIGTERM or SIGINT (a lab run by hand or by its fixture), then `stop()`; exit status 0."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    stop()
    return 0
