"""EC2 Query API responses: the XML botocore's ec2 parser reads (member names are the model's locationNames)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"


class Ec2Error(Exception):
    """An error answer: `code` is AWS's error code, `status` the HTTP status AWS uses for it."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


def iso(ts: float) -> str:
    """AWS's timestamp form: 2026-12-01T09:48:52.000Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def _render(name: str, value: Any, out: list[str]) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        out.append(f"<{name}>")
        for key, sub in value.items():
            _render(key, sub, out)
        out.append(f"</{name}>")
    elif isinstance(value, list):
        # EC2 lists are a wrapper element (volumeSet, tagSet, ...) holding <item> elements
        out.append(f"<{name}>")
        for item in value:
            _render("item", item, out)
        out.append(f"</{name}>")
    elif isinstance(value, bool):
        out.append(f"<{name}>{'true' if value else 'false'}</{name}>")
    else:
        out.append(f"<{name}>{escape(str(value))}</{name}>")


def response(action: str, body: dict[str, Any]) -> bytes:
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{NAMESPACE}">']
    out.append(f"<requestId>{uuid.uuid4()}</requestId>")
    for key, value in body.items():
        _render(key, value, out)
    out.append(f"</{action}Response>")
    return "".join(out).encode()


def error(err: Ec2Error) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{escape(err.code)}</Code><Message>{escape(err.message)}</Message>"
        f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()
