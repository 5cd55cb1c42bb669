"""A small HTTP/JSON client for the control socket (the bare socket module: the CLI starts fast)."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from app.cli.http_unix import NotHTTP, Truncated, exchange
from app.errors import Unavailable, error_from
from app.json_types import JSONObject


class ControlClient:
    def __init__(self, socket_path: str, timeout: float = 300.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: JSONObject | None = None, query: dict[str, str] | None = None) -> JSONObject:
        url = "/v1" + path + (f"?{urlencode(query)}" if query else "")
        payload = json.dumps(body).encode() if body is not None else None
        try:
            status, data = exchange(self.socket_path, method, url, payload, self.timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            raise Unavailable(self._not_running_message()) from None
        except PermissionError:
            raise Unavailable(f"no permission to use {self.socket_path}: run convoy as root") from None
        except TimeoutError:
            raise Unavailable(f"the convoy daemon at {self.socket_path} did not answer in {self.timeout:.0f} s") from None
        except (OSError, Truncated):
            # the daemon died or was restarted mid-request (kill -9, OOM, systemctl restart)
            raise Unavailable(self._closed_message()) from None
        except NotHTTP as error:
            raise Unavailable(
                f"the program at {self.socket_path} answered with something that is not HTTP ({error}); "
                "is it convoy's control socket? Point --socket or CONVOY_SOCKET at it"
            ) from None
        if not data:  # every answer of the daemon has a JSON body: it died while sending the headers
            raise Unavailable(self._closed_message())
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):  # every answer of the daemon is a JSON object
            raise Unavailable(f"the daemon at {self.socket_path} answered with something that is not a JSON object")
        if status >= 400:
            problem = decoded.get("error")
            problem = problem if isinstance(problem, dict) else {}
            message = problem.get("message") or f"the daemon answered HTTP {status}"
            raise error_from(str(problem.get("kind", "error")), str(message))
        return decoded

    def _closed_message(self) -> str:
        return (
            f"the daemon at {self.socket_path} closed the connection before answering; "
            "check `journalctl -u convoy` or the daemon log, and retry"
        )

    def _not_running_message(self) -> str:
        from pathlib import Path  # only on this path: pathlib is a tenth of the quick path's imports

        from app.control_socket import start_error_file

        error_file = start_error_file(Path(self.socket_path))
        if error_file.exists():
            reason = error_file.read_text(errors="replace").strip()
            return (
                f"the convoy daemon at {self.socket_path} refused to start: {reason} "
                "(for the plugin: docker plugin disable -f convoy; docker plugin set convoy KEY=VALUE; "
                "docker plugin enable convoy)"
            )
        return (
            f"cannot reach the convoy daemon at {self.socket_path}: it is not running. "
            "Start it with `convoy daemon` (or install the plugin), or point --socket / CONVOY_SOCKET "
            "at its control socket"
        )


def volume_path(name: str, suffix: str = "") -> str:
    return f"/volumes/{quote(name, safe='')}{suffix}"
