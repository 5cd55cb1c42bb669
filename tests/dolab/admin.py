"""The admin API (`/_lab/...` on the API port, JSON, no token) that switches faults on, and AdminClient, its client.

Routes (POST bodies are JSON objects):
  GET  /_lab/state                        the whole state, the delays and the faults
  GET  /_lab/calls                        {"calls": ["METHOD /path", ...]}: every API call received, in order
  POST /_lab/rate-limit-storm             {"calls": N}: the next N API calls answer 429 too_many_requests
  POST /_lab/fail-next                    {"calls": N, "status": 500, "only": "POST /v2/volumes", "after_work": bool}:
                                          the next N API calls (those starting with `only`) answer that 5xx; with
                                          after_work, having done their work (a lost answer)
  POST /_lab/stick-actions                {"stuck": bool}: while true, no action completes (they stay in-progress)
  POST /_lab/delays                       {"attach"|"detach"|"resize"|"busy": seconds, ...}
  POST /_lab/droplets                     {"droplet_id", "region", "metadata_port", "local"}: a droplet (+ metadata)
  POST /_lab/droplets/ID/power_off|power_on   its status: off | active (its volumes stay attached, as on DO)
  POST /_lab/clear-faults                 storms, failures and stuck actions off
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tests.labs.serving import AdminError, LabAdminClient  # noqa: F401 - AdminError: raised by AdminClient, imported from here

if TYPE_CHECKING:
    from tests.dolab.server import Lab


def handle(lab: Lab, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Route one admin request; returns (HTTP status, JSON answer)."""
    parts = path.split("?")[0].strip("/").split("/")[1:]  # after "_lab"
    faults = lab.faults
    if method == "GET" and parts == ["state"]:
        with lab.store.lock:
            state = asdict(lab.store.state)
        state["faults"] = faults.as_dict()
        state["delays"] = dict(lab.settings.delays)
        state["dev_root"] = str(lab.settings.dev_root)
        state["region"] = lab.settings.region
        return 200, state
    if method == "GET" and parts == ["calls"]:
        with faults.lock:
            return 200, {"calls": list(faults.calls)}
    if method != "POST":
        return 404, {"error": f"no admin route {method} {path}"}
    try:
        return _post(lab, parts, body)
    except (KeyError, ValueError, TypeError) as e:
        return 400, {"error": f"{path}: {e!r}"}


def _post(lab: Lab, parts: list[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    faults = lab.faults
    if parts == ["rate-limit-storm"]:
        with faults.lock:
            faults.storm_calls = int(body.get("calls", 1))
        return 200, faults.as_dict()
    if parts == ["fail-next"]:
        status = int(body.get("status", 500))
        if not 500 <= status <= 599:
            raise ValueError(f"status must be a 5xx, got {status}")
        with faults.lock:
            faults.fail_calls, faults.fail_status = int(body.get("calls", 1)), status
            faults.fail_only, faults.fail_after_work = str(body.get("only", "")), bool(body.get("after_work", False))
        return 200, faults.as_dict()
    if parts == ["stick-actions"]:
        with faults.lock:
            faults.stick_actions = bool(body.get("stuck", True))
        return 200, faults.as_dict()
    if parts == ["delays"]:
        unknown = set(body) - set(lab.settings.delays)
        if unknown:
            raise ValueError(f"unknown delays {sorted(unknown)}; known: {sorted(lab.settings.delays)}")
        lab.settings.delays.update({k: float(v) for k, v in body.items()})
        return 200, {"delays": dict(lab.settings.delays)}
    if parts == ["clear-faults"]:
        with faults.lock:
            faults.storm_calls = faults.fail_calls = 0
            faults.stick_actions = False
        return 200, faults.as_dict()
    if parts == ["droplets"]:
        droplet_id = int(body["droplet_id"])
        port = lab.add_droplet(droplet_id, body.get("region"), int(body.get("metadata_port", 0)), bool(body.get("local", True)))
        return 200, {"droplet_id": droplet_id, "metadata_endpoint": f"http://127.0.0.1:{port}"}
    if len(parts) == 3 and parts[0] == "droplets" and parts[2] in ("power_off", "power_on"):
        with lab.store.lock:
            droplet = lab.store.droplet(int(parts[1]))
            if droplet is None:
                return 404, {"error": f"no droplet {parts[1]}"}
            droplet.status = "off" if parts[2] == "power_off" else "active"
            lab.store.save()
        return 200, {"droplet_id": droplet.id, "status": droplet.status}
    return 404, {"error": f"no admin route POST /_lab/{'/'.join(parts)}"}


class AdminClient(LabAdminClient):
    """Faults and inspection for tests: `AdminClient("http://127.0.0.1:PORT")` (the API endpoint)."""

    def rate_limit_storm(self, calls: int) -> None:
        self._call("POST", "rate-limit-storm", {"calls": calls})

    def fail_next(self, calls: int, status: int = 500, only: str = "", after_work: bool = False) -> None:
        """The next `calls` API calls starting with `only` ("POST /v2/volumes") answer `status`; `after_work`: having
        done what they were asked (the answer is lost, as when a connection drops)."""
        self._call("POST", "fail-next", {"calls": calls, "status": status, "only": only, "after_work": after_work})

    def stick_actions(self, stuck: bool = True) -> None:
        self._call("POST", "stick-actions", {"stuck": stuck})

    def set_delays(self, **seconds: float) -> dict[str, float]:
        return self._call("POST", "delays", seconds)["delays"]

    def add_droplet(self, droplet_id: int, region: str | None = None, metadata_port: int = 0, local: bool = True) -> str:
        """A further droplet; returns its metadata endpoint. `local=False`: it lives elsewhere (no devices here)."""
        body = {"droplet_id": droplet_id, "region": region, "metadata_port": metadata_port, "local": local}
        return self._call("POST", "droplets", body)["metadata_endpoint"]

    def power_off(self, droplet_id: int) -> None:
        self._call("POST", f"droplets/{droplet_id}/power_off")

    def power_on(self, droplet_id: int) -> None:
        self._call("POST", f"droplets/{droplet_id}/power_on")

    def clear_faults(self) -> None:
        self._call("POST", "clear-faults")
