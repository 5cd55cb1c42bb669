"""The Lab: the EC2 + admin HTTP server, one IMDS server per instance, and the ticker, in one process."""

from __future__ import annotations

import json
import logging
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.ec2lab import admin, direct, xmlout
from tests.ec2lab.api import Cloud
from tests.ec2lab.config import Faults, Settings
from tests.ec2lab.imds import make_handler
from tests.ec2lab.model import Instance, Store
from tests.ec2lab.params import Params
from tests.ec2lab.transitions import Transitions
from tests.ec2lab.xmlout import Ec2Error
from tests.labs.serving import LoopbackServer, Servers

log = logging.getLogger("ec2lab")
TICK = 0.05
MAX_BODY = 1 << 20


class _ApiHandler(BaseHTTPRequestHandler):
    server: LoopbackServer

    def log_message(self, format, *args):
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(length, MAX_BODY))

    def do_GET(self):
        if self.path.startswith("/snapshots/"):  # the EBS direct APIs, on the same endpoint
            status, answer = direct.handle(self.server.lab.store, self.path)
            return self._send(status, json.dumps(answer).encode(), "application/json")
        self._admin("GET", {})

    def do_POST(self):
        raw = self._body()
        if self.path.startswith("/_lab/"):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return self._send(400, b'{"error": "the body is not JSON"}', "application/json")
            return self._admin("POST", body)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode(), keep_blank_values=True).items()}
        self._ec2(form)

    def _admin(self, method: str, body: dict) -> None:
        if not self.path.startswith("/_lab/"):
            return self._send(404, b"not found: the EC2 API takes POST /", "text/plain")
        status, answer = admin.handle(self.server.lab, method, self.path, body)
        self._send(status, json.dumps(answer).encode(), "application/json")

    def _ec2(self, form: dict[str, str]) -> None:
        lab = self.server.lab
        action = form.get("Action", "")
        with lab.faults.lock:
            lab.faults.calls.append(action)
        try:
            if lab.faults.take_throttle():
                raise Ec2Error("RequestLimitExceeded", "Request limit exceeded.", 503)
            body = xmlout.response(action, lab.cloud.call(action, Params(form)))
            status = 200
        except Ec2Error as e:
            body, status = xmlout.error(e), e.status
            log.info("%s -> %s %s", action, e.code, e.message)
        self._send(status, body, "text/xml;charset=UTF-8")


class Lab:
    """Start with .start(); .port is the EC2 port, .imds_ports maps instance id -> its IMDS port."""

    def __init__(self, state_dir: Path, port: int = 0, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.store = Store(state_dir)
        self.faults = Faults()
        self.cloud = Cloud(self.store, self.settings, self.faults)
        self.transitions = Transitions(self.store, self.settings, self.faults)
        self._port = port
        self._servers = Servers(log)
        self._imds: dict[str, ThreadingHTTPServer] = {}
        self.port = 0

    def start(self, instances: list[tuple[str, int, str, str | None]] = ()) -> Lab:
        """Serve. `instances` (id, IMDS port, platform, AZ) are added or updated; those the state already knows
        and `instances` does not name get their IMDS on the port they had."""
        self.transitions.recover()
        api = LoopbackServer(self._port, _ApiHandler, self)
        self.port = api.server_address[1]
        self._servers.serve(api)
        for instance_id, port, platform, az in instances:
            self.add_instance(instance_id, port, platform, az)
        with self.store.lock:
            known = [(i.id, i.imds_port, i.platform, i.az) for i in self.store.state.instances.values()]
        for instance_id, port, platform, az in known:
            if instance_id not in self._imds:
                self.add_instance(instance_id, port, platform, az)
        self._servers.tick_every(TICK, self.transitions.tick, "ec2lab-ticker")
        return self

    def add_instance(self, instance_id: str, imds_port: int = 0, platform: str = "nitro", az: str | None = None) -> int:
        """Add (or update) an instance and start its IMDS server; returns the IMDS port."""
        if not instance_id.startswith("i-"):
            raise ValueError(f"instance id {instance_id!r} must start with 'i-'")
        if platform not in ("nitro", "xen"):
            raise ValueError(f"platform {platform!r}: must be nitro or xen")
        with self.store.lock:
            inst = self.store.state.instances.get(instance_id)
            if inst is None:
                inst = self.store.state.instances[instance_id] = Instance(instance_id, az or self.settings.region + "a", platform)
            inst.platform, inst.az = platform, az or inst.az
            running = self._imds.get(instance_id)
            if running is not None and imds_port and running.server_address[1] != imds_port:
                # asked for another port than the one it had (e.g. on the command line after a restart)
                self._servers.retire(running)
                del self._imds[instance_id]
            if instance_id not in self._imds:
                server = LoopbackServer(imds_port, make_handler(self, instance_id), self)
                self._imds[instance_id] = server
                self._servers.serve(server)
            inst.imds_port = self._imds[instance_id].server_address[1]
            self.store.save()
            return inst.imds_port

    def stop(self) -> None:
        """Stop serving. Volumes, attachments and their loop devices stay: a restart finds them."""
        self._servers.stop()
