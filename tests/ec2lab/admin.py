"""The admin API (`/_lab/...` on the EC2 port, JSON) that switches faults on, and AdminClient, its Python client.

Routes (POST bodies are JSON objects):
  GET  /_lab/state                      the whole state, the delays and the faults
  GET  /_lab/calls                      {"calls": [Action, ...]}: every EC2 action received, in order
  POST /_lab/throttle                   {"calls": N}: the next N EC2 calls answer RequestLimitExceeded (HTTP 503)
  POST /_lab/stuck-attach               {"volume_id": ID or null (every volume), "stuck": bool}: attaches never complete
  POST /_lab/delays                     {"create"|"attach"|"detach"|"snapshot"|"modify": seconds, ...}
  POST /_lab/instances                  {"instance_id", "platform": nitro|xen, "az"}: a new instance with its IMDS port
  POST /_lab/instances/ID/stop|start    the instance's state (its volumes stay attached, as on AWS)
  POST /_lab/clear-faults               throttling and stuck attaches off
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tests.labs.serving import AdminError, LabAdminClient  # noqa: F401 - AdminError: raised by AdminClient, imported from here

if TYPE_CHECKING:
    from tests.ec2lab.server import Lab


def handle(lab: Lab, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Route one admin request; returns (HTTP status, JSON answer)."""
    parts = path.strip("/").split("/")[1:]  # after "_lab"
    faults = lab.faults
    if method == "GET" and parts == ["state"]:
        with lab.store.lock:
            state = asdict(lab.store.state)
        with faults.lock:
            state["faults"] = {
                "throttle_calls": faults.throttle_calls,
                "stuck_attach_all": faults.stuck_attach_all,
                "stuck_attach_volumes": sorted(faults.stuck_attach_volumes),
                "fail_snapshots": faults.fail_snapshots,
            }
        state["delays"] = dict(lab.settings.delays)
        state["dev_root"] = str(lab.settings.dev_root)
        state["region"] = lab.settings.region
        return 200, state
    if method == "GET" and parts == ["calls"]:
        with faults.lock:
            return 200, {"calls": list(faults.calls)}
    if method != "POST":
        return 404, {"error": f"no admin route {method} {path}"}
    if parts == ["throttle"]:
        with faults.lock:
            faults.throttle_calls = int(body.get("calls", 1))
        return 200, {"throttle_calls": faults.throttle_calls}
    if parts == ["stuck-attach"]:
        volume_id, stuck = body.get("volume_id"), bool(body.get("stuck", True))
        with faults.lock:
            if volume_id is None:
                faults.stuck_attach_all = stuck
            elif stuck:
                faults.stuck_attach_volumes.add(volume_id)
            else:
                faults.stuck_attach_volumes.discard(volume_id)
        return 200, {"stuck": stuck, "volume_id": volume_id}
    if parts == ["fail-snapshots"]:
        with faults.lock:
            faults.fail_snapshots = bool(body.get("fail", True))
        return 200, {"fail_snapshots": faults.fail_snapshots}
    if parts == ["delays"]:
        unknown = set(body) - set(lab.settings.delays)
        if unknown:
            return 400, {"error": f"unknown delays {sorted(unknown)}; known: {sorted(lab.settings.delays)}"}
        lab.settings.delays.update({k: float(v) for k, v in body.items()})
        return 200, {"delays": dict(lab.settings.delays)}
    if parts == ["clear-faults"]:
        with faults.lock:
            faults.throttle_calls, faults.stuck_attach_all = 0, False
            faults.stuck_attach_volumes.clear()
            faults.fail_snapshots = False
        return 200, {}
    if parts == ["instances"]:
        try:
            port = lab.add_instance(
                body["instance_id"], int(body.get("imds_port", 0)), body.get("platform", "nitro"), body.get("az")
            )
        except (KeyError, ValueError) as e:
            return 400, {"error": str(e)}
        return 200, {"instance_id": body["instance_id"], "imds_endpoint": f"http://127.0.0.1:{port}/"}
    if len(parts) == 3 and parts[0] == "instances" and parts[2] in ("stop", "start"):
        with lab.store.lock:
            inst = lab.store.state.instances.get(parts[1])
            if inst is None:
                return 404, {"error": f"no instance {parts[1]}"}
            inst.state = "stopped" if parts[2] == "stop" else "running"
            lab.store.save()
        return 200, {"instance_id": inst.id, "state": inst.state}
    return 404, {"error": f"no admin route {method} {path}"}


class AdminClient(LabAdminClient):
    """Faults and inspection for tests: `AdminClient("http://127.0.0.1:PORT")` (the EC2 endpoint)."""

    def throttle(self, calls: int) -> None:
        self._call("POST", "throttle", {"calls": calls})

    def stick_attach(self, volume_id: str | None = None, stuck: bool = True) -> None:
        self._call("POST", "stuck-attach", {"volume_id": volume_id, "stuck": stuck})

    def fail_snapshots(self, fail: bool = True) -> None:
        """Pending snapshots end in state error (with a StateMessage) instead of completed."""
        self._call("POST", "fail-snapshots", {"fail": fail})

    def set_delays(self, **seconds: float) -> dict[str, float]:
        return self._call("POST", "delays", seconds)["delays"]

    def add_instance(self, instance_id: str, platform: str = "nitro", az: str | None = None, imds_port: int = 0) -> str:
        answer = self._call(
            "POST", "instances", {"instance_id": instance_id, "platform": platform, "az": az, "imds_port": imds_port}
        )
        return answer["imds_endpoint"]

    def stop_instance(self, instance_id: str) -> None:
        self._call("POST", f"instances/{instance_id}/stop")

    def start_instance(self, instance_id: str) -> None:
        self._call("POST", f"instances/{instance_id}/start")

    def clear_faults(self) -> None:
        self._call("POST", "clear-faults")
