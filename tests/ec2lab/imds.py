"""IMDSv2 for one emulated instance: a token first (PUT), then GETs that carry it; 401 without a valid token.

Serves what botocore and the EBS driver read: instance id, AZ, region, the identity document, and an instance
role's credentials (so boto3's default chain works with no AWS_* variables, as on a real instance).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

from tests.ec2lab.model import ACCOUNT_ID

if TYPE_CHECKING:
    from tests.ec2lab.server import Lab

ROLE = "ec2lab-role"
MAX_TTL = 21600


class Tokens:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.expiry: dict[str, float] = {}

    def issue(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            now = time.monotonic()
            self.expiry = {t: e for t, e in self.expiry.items() if e > now}  # bounded: expired ones go
            self.expiry[token] = now + ttl
        return token

    def valid(self, token: str | None) -> bool:
        with self.lock:
            return token is not None and self.expiry.get(token, 0) > time.monotonic()


def make_handler(lab: Lab, instance_id: str) -> type[BaseHTTPRequestHandler]:
    tokens = Tokens()

    class ImdsHandler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # quiet: the API log says what matters
            pass

        def _send(self, status: int, body: str, content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self):
            if self.path.rstrip("/") != "/latest/api/token":
                return self._send(404, "Not Found")
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= MAX_TTL:
                return self._send(400, "Bad Request: X-aws-ec2-metadata-token-ttl-seconds must be 1 to 21600")
            self._send(200, tokens.issue(int(ttl)))

        def do_GET(self):
            if not tokens.valid(self.headers.get("X-aws-ec2-metadata-token")):
                return self._send(401, "Unauthorized")
            answers = self._answers()
            path = self.path.split("?")[0].rstrip("/")
            if path not in answers:
                return self._send(404, "Not Found")
            body, content_type = answers[path]
            self._send(200, body, content_type)

        def _answers(self) -> dict[str, tuple[str, str]]:
            with lab.store.lock:
                inst = lab.store.state.instances[instance_id]
                az, region = inst.az, lab.settings.region
            meta = "/latest/meta-data"
            document = {
                "accountId": ACCOUNT_ID,
                "architecture": "x86_64",
                "availabilityZone": az,
                "imageId": "ami-0ec2lab00000000000",
                "instanceId": instance_id,
                "instanceType": "m5.large" if inst.platform == "nitro" else "m4.large",
                "pendingTime": "2026-01-01T00:00:00Z",
                "privateIp": "127.0.0.1",
                "region": region,
                "version": "2017-09-30",
            }
            expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600))
            credentials = {
                "Code": "Success",
                "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "Type": "AWS-HMAC",
                "AccessKeyId": "ASIAEC2LABEXAMPLE000",
                "SecretAccessKey": "ec2lab-secret",
                "Token": "ec2lab-session-token",
                "Expiration": expiration,
            }
            text = "text/plain"
            return {
                meta: ("instance-id\nplacement/\niam/\n", text),
                f"{meta}/instance-id": (instance_id, text),
                f"{meta}/instance-type": (document["instanceType"], text),
                f"{meta}/placement": ("availability-zone\nregion\n", text),
                f"{meta}/placement/availability-zone": (az, text),
                f"{meta}/placement/region": (region, text),
                f"{meta}/iam/security-credentials": (ROLE, text),
                f"{meta}/iam/security-credentials/{ROLE}": (json.dumps(credentials), text),
                "/latest/dynamic/instance-identity/document": (json.dumps(document, indent=2), "application/json"),
            }

    return ImdsHandler
