"""The droplet metadata service (169.254.169.254 on a real droplet), one per emulated droplet on its own loopback
port: /metadata/v1/ (the index), /metadata/v1/id, /hostname, /region, /tags/, /features/ and /metadata/v1.json."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.dolab.server import Lab

INDEX = "id\nhostname\nuser-data\nvendor-data\npublic-keys\nregion\ninterfaces/\ndns/\ntags/\nfeatures/\n"


def make_handler(lab: Lab, droplet_id: int) -> type[BaseHTTPRequestHandler]:
    class MetadataHandler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # quiet: the API log says what matters
            pass

        def _send(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            with lab.store.lock:
                droplet = lab.store.droplet(droplet_id)
                region = droplet.region if droplet else lab.settings.region
            hostname = f"dolab-{droplet_id}"
            document = {
                "droplet_id": droplet_id,
                "hostname": hostname,
                "vendor_data": "",
                "public_keys": [],
                "auth_key": "",
                "region": region,
                "interfaces": {
                    "private": [
                        {
                            "ipv4": {"ip_address": "127.0.0.1", "netmask": "255.0.0.0", "gateway": "127.0.0.1"},
                            "mac": "02:00:00:00:00:01",
                            "type": "private",
                        }
                    ],
                    "public": [],
                },
                "floating_ip": {"ipv4": {"active": False}},
                "reserved_ip": {"ipv4": {"active": False}},
                "dns": {"nameservers": ["127.0.0.53"]},
                "tags": [],
                "features": {"dhcp_enabled": False},
            }
            answers = {
                "/metadata/v1": INDEX,
                "/metadata/v1/": INDEX,
                "/metadata/v1/id": str(droplet_id),
                "/metadata/v1/hostname": hostname,
                "/metadata/v1/region": region,
                "/metadata/v1/user-data": "",
                "/metadata/v1/vendor-data": "",
                "/metadata/v1/public-keys": "",
                "/metadata/v1/tags/": "",
                "/metadata/v1/features/": "dhcp_enabled\n",
            }
            path = self.path.split("?")[0]
            if path == "/metadata/v1.json":
                return self._send(200, json.dumps(document), "application/json")
            if path not in answers:
                return self._send(404, "404 page not found\n")
            self._send(200, answers[path])

    return MetadataHandler
