"""The DigitalOcean API calls the digitalocean back-end makes, through python-digitalocean, every wait bounded.

python-digitalocean builds the requests (the Bearer token, JSON bodies,
`links.pages` pagination); every request it sends passes through
`_Transport`, mixed into its classes, which adds what it lacks: time-outs,
back-off on 429 (honouring `Retry-After`, else `ratelimit-reset`), a
bounded number of retries of 5xx and of unreachable endpoints, and DO's
error JSON ({"id", "message"}) as our errors. The token is given once and
never appears in a message or a log line (python-digitalocean masks it in
its own debug log).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import digitalocean
import requests

from app.errors import Conflict, ConvoyError, InvalidInput, NotFound, Unavailable

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = (5.0, 30.0)  # seconds to connect, to read an answer
SERVER_ERROR_RETRIES = 4  # a 5xx is retried this many times, with back-off
NETWORK_RETRIES = 2  # so is an endpoint that did not answer
RATE_LIMIT_BUDGET = 30.0  # seconds one call may spend waiting out 429s: Docker gives a Mount 120 in all
MAX_RATE_WAIT = 5.0  # the longest single wait for a rate limit to lift
BACKOFF = 0.5  # first wait after a 5xx, doubled each time
POLL = 0.5  # seconds between looks at an action in progress


class _Transport:
    """Mixed into python-digitalocean's classes: each HTTP attempt they make passes through here.

    python-digitalocean funnels every request (pages of lists too) through
    `BaseAPI.__perform_request`; this overrides it under its mangled name.
    """

    def get_timeout(self) -> tuple[float, float]:
        return REQUEST_TIMEOUT  # python-digitalocean has none unless an environment variable sets one

    def _BaseAPI__perform_request(self, url: str, method: str = "GET", params: Any = None) -> requests.Response:
        send = super()._BaseAPI__perform_request  # type: ignore[misc]
        what = f"{method} {url.split('/v2/', 1)[-1].lstrip('/')}" if "/v2/" in url else f"{method} {url}"
        server_errors = network_errors = 0
        rate_limited_until = time.monotonic() + RATE_LIMIT_BUDGET
        while True:
            try:
                answer: requests.Response = send(url, method, params)
            except requests.RequestException as err:
                network_errors += 1
                if network_errors > NETWORK_RETRIES:
                    raise Unavailable(
                        f"the DigitalOcean API at {_root(getattr(self, 'end_point', ''))} did not answer {what} "
                        f"({type(err).__name__}); check the network and do.api_endpoint"
                    ) from None
                time.sleep(BACKOFF * network_errors)
                continue
            status = answer.status_code
            if status == 429:
                wait = _rate_limit_wait(answer.headers)
                if time.monotonic() + wait > rate_limited_until:
                    raise Unavailable(
                        f"{what}: DigitalOcean's rate limit (ratelimit-remaining "
                        f"{answer.headers.get('ratelimit-remaining', '?')}) did not lift within {RATE_LIMIT_BUDGET:.0f} s; "
                        "retry later, or spread the work (each convoy host has its own token's limit)"
                    )
                log.info("%s: rate limited by DigitalOcean; waiting %.1f s", what, wait)
                time.sleep(wait)
                continue
            if status >= 500 and server_errors < SERVER_ERROR_RETRIES:
                server_errors += 1
                log.info("%s: DigitalOcean answered %d; retry %d of %d", what, status, server_errors, SERVER_ERROR_RETRIES)
                time.sleep(BACKOFF * 2 ** (server_errors - 1))
                continue
            if status >= 400:
                raise _error(what, answer)
            return answer


class Manager(_Transport, digitalocean.Manager):  # type: ignore[misc]
    pass


class Volume(_Transport, digitalocean.Volume):  # type: ignore[misc]
    pass


class Action(_Transport, digitalocean.Action):  # type: ignore[misc]
    pass


class Snapshot(_Transport, digitalocean.Snapshot):  # type: ignore[misc]
    pass


class Tag(_Transport, digitalocean.Tag):  # type: ignore[misc]
    pass


class DoApi:
    """One account's API at one endpoint; plain dicts in and out, as DO's reference spells them."""

    def __init__(self, token: str, endpoint: str):
        self.endpoint = endpoint.rstrip("/")
        self.end_point = self.endpoint if self.endpoint.endswith("/v2") else f"{self.endpoint}/v2"
        self.end_point += "/"
        self._token = token
        self.manager = self._make(Manager)

    def _make(self, cls: type, **attrs: Any) -> Any:
        return cls(token=self._token, end_point=self.end_point, **attrs)

    def get(self, path: str, key: str, **params: Any) -> Any:
        """GET a resource or a list (every page of it); the answer's `key`."""
        return self.manager.get_data(path, params=params)[key]

    # reads

    def droplet(self, droplet_id: int) -> dict[str, Any]:
        return dict(self.get(f"droplets/{droplet_id}", "droplet"))

    def volume(self, volume_id: str) -> dict[str, Any]:
        return dict(self.get(f"volumes/{volume_id}", "volume"))

    def volumes(self, region: str, name: str | None = None) -> list[dict[str, Any]]:
        return list(self.get("volumes", "volumes", region=region, **({"name": name} if name else {})))

    def volume_snapshots(self, volume_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"volumes/{volume_id}/snapshots", "snapshots"))

    def volume_actions(self, volume_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"volumes/{volume_id}/actions", "actions"))

    def snapshot(self, snapshot_id: str) -> dict[str, Any]:
        return dict(self.get(f"snapshots/{snapshot_id}", "snapshot"))

    def all_volume_snapshots(self) -> list[dict[str, Any]]:
        return list(self.get("snapshots", "snapshots", resource_type="volume"))

    # changes

    def create_volume(
        self,
        *,
        name: str,
        region: str,
        size_gib: int,
        description: str,
        tags: list[str],
        snapshot_id: str | None = None,
    ) -> dict[str, Any]:
        volume = self._make(
            Volume, name=name, region=region, size_gigabytes=size_gib, description=description, tags=tags, snapshot_id=snapshot_id
        )
        volume.create_from_snapshot() if snapshot_id else volume.create()
        return self.volume(str(volume.id))

    def destroy_volume(self, volume_id: str) -> None:
        self._make(Volume, id=volume_id).destroy()

    def volume_action(self, volume_id: str, kind: str, region: str, *, droplet_id: int = 0, size_gib: int = 0) -> dict[str, Any]:
        """Start an attach, detach or resize; the action (in progress) DO answers."""
        volume = self._make(Volume, id=volume_id)
        if kind == "resize":
            answer = volume.resize(size_gib, region)
        elif kind == "attach":
            answer = volume.attach(droplet_id, region)
        else:
            answer = volume.detach(droplet_id, region)
        return dict(answer["action"])

    def wait_action(self, action: dict[str, Any], deadline: float, what: str, todo: str) -> None:
        """Poll the action until it completed; Unavailable when it errored or `deadline` (monotonic) passed."""
        current = self._make(Action, id=action["id"])
        status = action.get("status")
        while status == "in-progress":
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"{what} did not happen in time (DigitalOcean action {action['id']} is still in progress); {todo}"
                )
            time.sleep(POLL)
            current.load_directly()
            status = current.status
        if status != "completed":
            raise Unavailable(f"{what} failed: DigitalOcean action {action['id']} {status}; {todo}")

    def create_snapshot(self, volume_id: str, name: str, tags: list[str]) -> dict[str, Any]:
        volume = self._make(Volume, id=volume_id)
        body = {"name": name, "tags": tags}
        answer = volume.get_data(f"volumes/{volume_id}/snapshots", type=digitalocean.baseapi.POST, params=body)
        return dict(answer["snapshot"])

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._make(Snapshot, id=snapshot_id).destroy()

    def tag(self, tag: str, resource_id: str, resource_type: str) -> None:
        """Tag a volume or a volume snapshot (the tag is made first: DO tags only with existing tags)."""
        made = self._make(Tag, name=tag)
        with contextlib.suppress(Conflict, InvalidInput):  # it exists already (DO says so with 409 or 422)
            made.create()
        resources = [{"resource_id": resource_id, "resource_type": resource_type}]
        made.get_data(f"tags/{tag}/resources", type=digitalocean.baseapi.POST, params={"resources": resources})

    def wait(self, what: str, look: Callable[[], bool], deadline: float, todo: str) -> None:
        """Poll `look` until it is true; Unavailable naming `what` and `todo` past `deadline` (monotonic)."""
        while not look():
            if time.monotonic() > deadline:
                raise Unavailable(f"{what} did not happen in time; {todo}")
            time.sleep(POLL)


def _root(end_point: str) -> str:
    return end_point.rstrip("/").removesuffix("/v2")


def _rate_limit_wait(headers: Any) -> float:
    """How long to wait after a 429: Retry-After when DO gives it, else until ratelimit-reset (epoch seconds)."""
    for header, relative in (("retry-after", True), ("ratelimit-reset", False)):
        value = headers.get(header)
        try:
            seconds = float(value) if relative else float(value) - time.time()
        except (TypeError, ValueError):
            continue
        return min(max(seconds, 0.2), MAX_RATE_WAIT)
    return 1.0


def _error(what: str, answer: requests.Response) -> ConvoyError:
    """DO's error JSON ({"id": ..., "message": ...}) as the error the user reads."""
    try:
        body = answer.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    code = str(body.get("id") or answer.status_code)
    message = str(body.get("message") or answer.reason or "").strip()
    said = f"{what}: {answer.status_code} {code}" + (f" ({message})" if message else "")
    status = answer.status_code
    if status == 401:
        return Unavailable(
            f"{said}: DigitalOcean refused the API token; set a valid one (`docker plugin set convoy DO_TOKEN=...`, "
            "or do.token_file) with read and write scopes"
        )
    if status == 403:
        return Unavailable(f"{said}: the API token may not do this; give it the block storage and tag scopes")
    if status == 404:
        return NotFound(said)
    if status == 409:
        return Conflict(said)
    if status in (400, 422):
        return InvalidInput(said)
    if status == 429:
        return Unavailable(f"{said}: rate limited; retry later")
    return Unavailable(f"{said}: DigitalOcean is failing; retry later")
