"""The Lab: the DO API + admin HTTP server, one metadata server per droplet, and the ticker, in one process."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.dolab import admin
from tests.dolab.api import Cloud
from tests.dolab.config import TOKEN, Faults, RateLimit, Settings
from tests.dolab.metadata import make_handler
from tests.dolab.model import Droplet, Store
from tests.dolab.render import DoError
from tests.dolab.ticker import Ticker
from tests.labs.serving import HOST, LoopbackServer, Servers

log = logging.getLogger("dolab")
TICK = 0.05
MAX_BODY = 1 << 20
STORM_RETRY_AFTER = 1  # seconds
FAILURE_MESSAGES = {500: "Unexpected server-side error", 503: "Service Unavailable"}


class _ApiHandler(BaseHTTPRequestHandler):
    server: LoopbackServer

    def log_message(self, format, *args):
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, answer: dict | None, headers: dict[str, str] | None = None) -> None:
        body = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, MAX_BODY))

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        raw = self._body()
        url = urllib.parse.urlsplit(self.path)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        if url.path.startswith("/_lab/"):
            if not isinstance(body, dict):
                return self._send(400, {"error": "the body is not a JSON object"})
            status, answer = admin.handle(self.server.lab, method, url.path, body)
            return self._send(status, answer)
        self._api(method, url, body)

    def _api(self, method: str, url: urllib.parse.SplitResult, body: object) -> None:
        lab = self.server.lab
        with lab.faults.lock:
            lab.faults.calls.append(f"{method} {url.path}")
        limit, remaining, reset = lab.rate_limit.count()
        headers = {"ratelimit-limit": str(limit), "ratelimit-remaining": str(remaining), "ratelimit-reset": str(reset)}
        request_id = str(uuid.uuid4())
        headers["x-request-id"] = request_id
        try:
            if self.headers.get("Authorization", "") != f"Bearer {TOKEN}":
                # the live API's words (its reference's example says "unauthorized", "Unable to authenticate you.")
                raise DoError(401, "Unable to authenticate you", "Unauthorized")
            fault = lab.faults.take(f"{method} {url.path}")
            if fault == "storm":  # DO's burst limit: nothing remains, and it says when to come back
                headers.update({"ratelimit-remaining": "0", "ratelimit-reset": str(int(time.time()) + STORM_RETRY_AFTER)})
                headers["retry-after"] = str(STORM_RETRY_AFTER)
                raise DoError(429, "API Rate limit exceeded.")
            if fault == "fail":
                raise _failure(lab.faults.fail_status)
            if not isinstance(body, dict):
                raise DoError(400, "the request body is not a JSON object")
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            base = f"http://{self.headers.get('Host') or f'{HOST}:{lab.port}'}"
            status, answer = lab.cloud.call(method, url.path, query, body, base)
            if fault == "fail-after-work":  # done, but the answer is lost: a client's retry meets what it made
                raise _failure(lab.faults.fail_status)
        except DoError as e:
            status, answer = e.status, {"id": e.id, "message": e.message, "request_id": request_id}
            log.info("%s %s -> %d %s: %s", method, url.path, e.status, e.id, e.message)
        except Exception as e:  # a bug, or a tool (losetup, mkfs, cp) that failed: DO's 500, the traceback in the log
            log.exception("%s %s failed", method, url.path)
            status = 500
            answer = {"id": "server_error", "message": f"Unexpected server-side error: {e}", "request_id": request_id}
        self._send(status, answer, headers)


def _failure(status: int) -> DoError:
    """A 5xx in DO's words."""
    return DoError(status, FAILURE_MESSAGES.get(status, "Unexpected server-side error"))


class Lab:
    """Start with .start(); .port is the API port; each droplet's metadata port is in the state."""

    def __init__(self, state_dir: Path, port: int = 0, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.store = Store(state_dir)
        self.faults = Faults()
        self.rate_limit = RateLimit()
        self.cloud = Cloud(self.store, self.settings)
        self.ticker = Ticker(self.store, self.settings, self.faults)
        self._port = port
        self._servers = Servers(log)
        self._metadata: dict[int, ThreadingHTTPServer] = {}
        self.port = 0

    def start(self, droplets: list[tuple[int, int, str]] = ()) -> Lab:
        """Serve. `droplets` (id, metadata port, status) are added or updated; those the state already knows and
        `droplets` does not name get their metadata service on the port they had."""
        self.ticker.recover()
        api = LoopbackServer(self._port, _ApiHandler, self)
        self.port = api.server_address[1]
        self._servers.serve(api)
        for droplet_id, port, status in droplets:
            self.add_droplet(droplet_id, None, port, True, status)
        with self.store.lock:
            known = [(d.id, d.region, d.metadata_port, d.local) for d in self.store.state.droplets.values()]
        for droplet_id, region, port, local in known:
            if droplet_id not in self._metadata:
                self.add_droplet(droplet_id, region, port, local)
        self._servers.tick_every(TICK, self.ticker.tick, "dolab-ticker")
        return self

    def add_droplet(
        self, droplet_id: int, region: str | None = None, port: int = 0, local: bool = True, status: str | None = None
    ) -> int:
        """Add (or update) a droplet and start its metadata service; returns the metadata port."""
        if droplet_id <= 0:
            raise ValueError(f"droplet id {droplet_id} must be a positive integer")
        if status not in (None, "active", "off"):
            raise ValueError(f"droplet status {status!r}: must be active or off")
        with self.store.lock:
            droplet = self.store.droplet(droplet_id)
            if droplet is None:
                droplet = Droplet(droplet_id, region or self.settings.region)
                self.store.state.droplets[str(droplet_id)] = droplet
            droplet.region, droplet.local = region or droplet.region, local
            droplet.status = status or droplet.status
            running = self._metadata.get(droplet_id)
            if running is not None and port and running.server_address[1] != port:
                self._servers.retire(running)  # asked for another port than it had (e.g. on the command line after a restart)
                del self._metadata[droplet_id]
            if droplet_id not in self._metadata:
                server = LoopbackServer(port, make_handler(self, droplet_id), self)
                self._metadata[droplet_id] = server
                self._servers.serve(server)
            droplet.metadata_port = self._metadata[droplet_id].server_address[1]
            self.store.save()
            return droplet.metadata_port

    def stop(self) -> None:
        """Stop serving. Volumes, attachments and their loop devices stay: a restart finds them."""
        self._servers.stop()
