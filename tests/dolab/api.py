"""The DO API v2 endpoints the DigitalOcean driver uses, as DO's reference describes them. `Cloud.call` routes one
request; every handler runs under the store's lock and every change is saved before the answer leaves.

Checks DO makes when a request arrives (name rules, regions, "already attached", "pending event") answer at once
with DO's status and error id; what takes time (attach, detach, resize) is an action that ticker.py completes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from tests.dolab import dataplane, render
from tests.dolab.config import Settings
from tests.dolab.model import Action, Snapshot, Store, Volume, new_uuid
from tests.dolab.render import DoError, not_found
from tests.dolab.tags import TagRoutes, tag_list

log = logging.getLogger("dolab")
VOLUME_NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")
MAX_SIZE_GIB = 16 * 1024  # DO: 16 TiB
FILESYSTEMS = {"ext4": 16, "xfs": 12}  # filesystem_type -> longest filesystem_label
DROPLETS_CREATED = 1767225600.0  # 2026-01-01: every emulated droplet's created_at
PENDING = "Droplet already has a pending event."

Handler = Callable[..., tuple[int, dict[str, Any] | None]]


class Cloud:
    def __init__(self, store: Store, settings: Settings):
        self.store, self.settings = store, settings
        self.s = store.state
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (method, re.compile(pattern), handler)
            for method, pattern, handler in [
                ("GET", r"/v2/account", self.get_account),
                ("GET", r"/v2/regions", self.list_regions),
                ("GET", r"/v2/droplets", self.list_droplets),
                ("GET", r"/v2/droplets/(\d+)", self.get_droplet),
                ("GET", r"/v2/volumes", self.list_volumes),
                ("POST", r"/v2/volumes", self.create_volume),
                ("DELETE", r"/v2/volumes", self.delete_volume_by_name),
                ("POST", r"/v2/volumes/actions", self.volume_action_by_name),
                ("GET", r"/v2/volumes/([^/]+)", self.get_volume),
                ("DELETE", r"/v2/volumes/([^/]+)", self.delete_volume),
                ("GET", r"/v2/volumes/([^/]+)/actions", self.list_volume_actions),
                ("POST", r"/v2/volumes/([^/]+)/actions", self.volume_action),
                ("GET", r"/v2/volumes/([^/]+)/actions/(\d+)", self.get_volume_action),
                ("GET", r"/v2/volumes/([^/]+)/snapshots", self.list_volume_snapshots),
                ("POST", r"/v2/volumes/([^/]+)/snapshots", self.create_snapshot),
                ("GET", r"/v2/snapshots", self.list_snapshots),
                ("GET", r"/v2/snapshots/([^/]+)", self.get_snapshot),
                ("DELETE", r"/v2/snapshots/([^/]+)", self.delete_snapshot),
                ("GET", r"/v2/actions", self.list_actions),
                ("GET", r"/v2/actions/(\d+)", self.get_action),
                *TagRoutes(self.s).routes(),
            ]
        ]

    def call(self, method: str, path: str, query: dict[str, str], body: dict[str, Any], base: str):
        """Answer one API request: (HTTP status, JSON body or None). `base` is "http://host:port" as the client saw it."""
        path = path.rstrip("/") or "/"
        for route_method, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                with self.store.lock:
                    status, answer = handler(*match.groups(), query=query, body=body, url=base + path)
                    if method != "GET":
                        self.store.save()
                return status, answer
        raise not_found()

    # --- look-ups ---------------------------------------------------------------------------------------------
    def volume(self, volume_id: str) -> Volume:
        if volume_id not in self.s.volumes:
            raise not_found()
        return self.s.volumes[volume_id]

    def volume_named(self, name: str, region: str) -> Volume:
        for v in self.s.volumes.values():
            if v.name == name and v.region == region:
                return v
        raise not_found()

    def droplet(self, droplet_id: Any):
        d = self.store.droplet(_integer(droplet_id, "droplet_id"))
        if d is None:
            raise not_found()
        return d

    def pending(self, volume_id: str | None = None, droplet_id: int | None = None) -> Action | None:
        for a in self.s.actions.values():
            if a.status == "in-progress" and (a.volume_id == volume_id or (droplet_id and a.droplet_id == droplet_id)):
                return a
        return None

    def volume_ids_of(self, droplet_id: int) -> list[str]:
        return [v.id for v in self.s.volumes.values() if droplet_id in v.droplet_ids]

    # --- account, regions, droplets -----------------------------------------------------------------------------
    def get_account(self, query, body, url):
        account = {"droplet_limit": 25, "floating_ip_limit": 3, "volume_limit": 100, "email": "dolab@example.com"}
        return 200, {
            "account": {
                **account,
                "uuid": "d0000000-0000-4000-8000-00000000d01a",
                "email_verified": True,
                "status": "active",
                "status_message": "",
            }
        }

    def list_regions(self, query, body, url):
        items, extra = render.page([render.region(slug) for slug in render.REGIONS], query, url)
        return 200, {"regions": items, **extra}

    def list_droplets(self, query, body, url):
        droplets = sorted(self.s.droplets.values(), key=lambda d: d.id)
        shown = [render.droplet(d, self.volume_ids_of(d.id), DROPLETS_CREATED) for d in droplets]
        items, extra = render.page(shown, query, url)
        return 200, {"droplets": items, **extra}

    def get_droplet(self, droplet_id, query, body, url):
        d = self.droplet(droplet_id)
        return 200, {"droplet": render.droplet(d, self.volume_ids_of(d.id), DROPLETS_CREATED)}

    # --- volumes ------------------------------------------------------------------------------------------------
    def list_volumes(self, query, body, url):
        volumes = sorted(self.s.volumes.values(), key=lambda v: v.created_at)
        if query.get("name"):
            volumes = [v for v in volumes if v.name == query["name"]]
        if query.get("region"):
            volumes = [v for v in volumes if v.region == query["region"]]
        items, extra = render.page([render.volume(v) for v in volumes], query, url)
        return 200, {"volumes": items, **extra}

    def get_volume(self, volume_id, query, body, url):
        return 200, {"volume": render.volume(self.volume(volume_id))}

    def create_volume(self, query, body, url):
        name = _string(body, "name")
        if not name:
            raise DoError(422, "name is required")
        if not VOLUME_NAME.fullmatch(name):
            # DO's words; its reference adds: lowercase letters, digits and "-", at most 64, starting with a letter
            raise DoError(422, "failed to create volume: invalid volume name. names must be lowercase and alphanumeric")
        snapshot_id = _string(body, "snapshot_id")
        source = self.s.snapshots.get(snapshot_id) if snapshot_id else None
        if snapshot_id and source is None:
            raise DoError(422, f"failed to create volume: snapshot {snapshot_id} does not exist")
        region = _string(body, "region") or (source.region if source else "")
        if not region:
            raise DoError(422, "region is required (a region slug such as nyc3)")
        if region not in render.REGIONS:
            raise DoError(422, f"failed to create volume: region {region!r} is not a valid region slug")
        if source and region != source.region:
            raise DoError(422, f"failed to create volume: snapshot {source.id} is in {source.region}, not in {region}")
        size = body.get("size_gigabytes")
        if size is None and source:
            size = source.min_disk_size
        size = _integer(size, "size_gigabytes")
        if not 1 <= size <= MAX_SIZE_GIB:
            raise DoError(422, f"size_gigabytes must be between 1 and {MAX_SIZE_GIB}, got {size}")
        if source and size < source.min_disk_size:
            raise DoError(422, f"size_gigabytes ({size}) must be at least the snapshot's min_disk_size ({source.min_disk_size})")
        fs_type, fs_label = _string(body, "filesystem_type"), _string(body, "filesystem_label")
        if fs_type and fs_type not in FILESYSTEMS:
            raise DoError(422, f"filesystem_type must be one of {sorted(FILESYSTEMS)}, got {fs_type!r}")
        if fs_label and not fs_type:
            raise DoError(422, "filesystem_label may only be used in conjunction with filesystem_type")
        if fs_type and len(fs_label) > FILESYSTEMS[fs_type]:
            raise DoError(422, f"filesystem_label for {fs_type} may have at most {FILESYSTEMS[fs_type]} characters")
        if any(v.name == name and v.region == region for v in self.s.volumes.values()):
            raise DoError(409, f"a volume named {name} already exists in {region}")
        vol = Volume(
            id=new_uuid(),
            name=name,
            region=region,
            size=size,
            description=_string(body, "description"),
            created_at=time.time(),
            filesystem_type=fs_type,
            filesystem_label=fs_label if fs_type else "",
            tags=tag_list(self.s, body.get("tags")),
            snapshot_id=source.id if source else None,
        )
        file = self.store.volume_file(vol.id)
        dataplane.create_file(file, size, self.store.snapshot_file(source.id) if source else None)
        if fs_type and not source:  # DO formats a new volume when asked; one from a snapshot keeps its bytes
            dataplane.make_filesystem(file, fs_type, fs_label)
        self.s.volumes[vol.id] = vol
        log.info("created volume %s (%s, %d GiB, %s)", vol.id, name, size, region)
        return 201, {"volume": render.volume(vol)}

    def delete_volume(self, volume_id, query, body, url):
        self._destroy(self.volume(volume_id))
        return 204, None

    def delete_volume_by_name(self, query, body, url):
        if not query.get("name") or not query.get("region"):
            raise DoError(400, "deleting volumes by name takes both the name and the region query parameters")
        self._destroy(self.volume_named(query["name"], query["region"]))
        return 204, None

    def _destroy(self, vol: Volume) -> None:
        if vol.droplet_ids or self.pending(volume_id=vol.id):
            raise DoError(409, "A volume that's attached to a Droplet cannot be deleted. Please detach it first.")
        if any(s.volume_id == vol.id for s in self.s.snapshots.values()):
            raise DoError(409, "A volume that has snapshots cannot be deleted. Please delete its snapshots first.")
        self.store.volume_file(vol.id).unlink(missing_ok=True)
        del self.s.volumes[vol.id]
        log.info("deleted volume %s (%s)", vol.id, vol.name)

    # --- volume actions -----------------------------------------------------------------------------------------
    def volume_action(self, volume_id, query, body, url):
        return self._act(self.volume(volume_id), body)

    def volume_action_by_name(self, query, body, url):
        name, region = _string(body, "volume_name"), _string(body, "region")
        if not name or not region:
            raise DoError(400, "an action by volume name takes volume_name and region")
        if body.get("type") not in ("attach", "detach"):
            raise DoError(400, "actions by volume name are attach and detach; resize takes the volume's id")
        return self._act(self.volume_named(name, region), body)

    def _act(self, vol: Volume, body: dict[str, Any]):
        kind = body.get("type")
        region = _string(body, "region")
        if region and region != vol.region:
            raise DoError(422, f"volume {vol.name} is in {vol.region}, not in {region}")
        if kind == "attach":
            action = self._attach(vol, body)
        elif kind == "detach":
            action = self._detach(vol, body)
        elif kind == "resize":
            action = self._resize(vol, body)
        else:
            raise DoError(400, f"type must be attach, detach or resize, got {kind!r}")
        log.info("action %d: %s of %s (%s)", action.id, action.type, vol.id, vol.name)
        return 202, {"action": render.action(action)}

    def _new_action(self, kind: str, vol: Volume, **fields) -> Action:
        now = time.time()
        delay = self.settings.delays[kind]
        return self.store.new_action(
            type=f"{kind}_volume",
            status="in-progress",
            started_at=now,
            volume_id=vol.id,
            region=vol.region,
            due=now + delay,
            **fields,
        )

    def _attach(self, vol: Volume, body: dict[str, Any]) -> Action:
        droplet = self.droplet(body.get("droplet_id"))
        if droplet.region != vol.region:
            raise DoError(
                422,
                f"volume {vol.name} is in {vol.region} and droplet {droplet.id} in {droplet.region}: "
                "a volume attaches only to a droplet of its region",
            )
        if self.pending(volume_id=vol.id, droplet_id=droplet.id):
            raise DoError(422, PENDING)
        if droplet.id in vol.droplet_ids:
            raise DoError(422, "This volume is already attached to this Droplet.")
        if vol.droplet_ids:
            raise DoError(422, f"This volume is already attached to another Droplet ({vol.droplet_ids[0]}).")
        return self._new_action("attach", vol, droplet_id=droplet.id)

    def _detach(self, vol: Volume, body: dict[str, Any]) -> Action:
        droplet = self.droplet(body.get("droplet_id"))
        if self.pending(volume_id=vol.id, droplet_id=droplet.id):
            raise DoError(422, PENDING)
        if droplet.id not in vol.droplet_ids:
            raise DoError(422, "Attachment not found")
        return self._new_action("detach", vol, droplet_id=droplet.id)

    def _resize(self, vol: Volume, body: dict[str, Any]) -> Action:
        size = _integer(body.get("size_gigabytes"), "size_gigabytes")
        if size <= vol.size:
            raise DoError(422, f"volumes can only be resized upwards: {vol.name} is {vol.size} GiB, asked {size} GiB")
        if size > MAX_SIZE_GIB:
            raise DoError(422, f"the maximum size for a volume is {MAX_SIZE_GIB} GiB, asked {size} GiB")
        if self.pending(volume_id=vol.id):
            raise DoError(422, "Volume already has a pending event.")
        return self._new_action("resize", vol, size=size)

    def list_volume_actions(self, volume_id, query, body, url):
        vol = self.volume(volume_id)
        actions = [render.action(a) for a in self.s.actions.values() if a.volume_id == vol.id]
        items, extra = render.page(actions, query, url)
        return 200, {"actions": items, **extra}

    def get_volume_action(self, volume_id, action_id, query, body, url):
        vol = self.volume(volume_id)
        a = self.s.actions.get(action_id)
        if a is None or a.volume_id != vol.id:
            raise not_found()
        return 200, {"action": render.action(a)}

    def list_actions(self, query, body, url):
        items, extra = render.page([render.action(a) for a in self.s.actions.values()], query, url)
        return 200, {"actions": items, **extra}

    def get_action(self, action_id, query, body, url):
        a = self.s.actions.get(action_id)
        if a is None:
            raise not_found()
        return 200, {"action": render.action(a)}

    # --- snapshots ----------------------------------------------------------------------------------------------
    def create_snapshot(self, volume_id, query, body, url):
        vol = self.volume(volume_id)
        name = _string(body, "name")
        if not name:
            raise DoError(400, "name is required: a human-readable name for the volume snapshot")
        if any(s.volume_id == vol.id and s.name == name for s in self.s.snapshots.values()):
            raise DoError(409, f"a snapshot named {name} of volume {vol.name} already exists")
        snap_id = new_uuid()
        file = self.store.snapshot_file(snap_id)
        dataplane.copy_file(self.store.volume_file(vol.id), file)  # what the volume holds now, as DO's snapshot
        snap = Snapshot(
            id=snap_id,
            name=name,
            volume_id=vol.id,
            region=vol.region,
            created_at=time.time(),
            min_disk_size=vol.size,
            size_gigabytes=dataplane.allocated_gib(file),
            tags=tag_list(self.s, body.get("tags")),
        )
        self.s.snapshots[snap.id] = snap
        log.info("snapshot %s (%s) of %s", snap.id, name, vol.id)
        return 201, {"snapshot": render.snapshot(snap)}

    def list_volume_snapshots(self, volume_id, query, body, url):
        vol = self.volume(volume_id)
        snaps = [render.snapshot(s) for s in self._snapshots() if s.volume_id == vol.id]
        items, extra = render.page(snaps, query, url)
        return 200, {"snapshots": items, **extra}

    def list_snapshots(self, query, body, url):
        kind = query.get("resource_type", "")
        if kind not in ("", "volume", "droplet"):
            raise DoError(400, f"resource_type must be droplet or volume, got {kind!r}")
        snaps = [] if kind == "droplet" else [render.snapshot(s) for s in self._snapshots()]
        items, extra = render.page(snaps, query, url)
        return 200, {"snapshots": items, **extra}

    def _snapshots(self) -> list[Snapshot]:
        return sorted(self.s.snapshots.values(), key=lambda s: s.created_at)

    def get_snapshot(self, snapshot_id, query, body, url):
        if snapshot_id not in self.s.snapshots:
            raise not_found()
        return 200, {"snapshot": render.snapshot(self.s.snapshots[snapshot_id])}

    def delete_snapshot(self, snapshot_id, query, body, url):
        snap = self.s.snapshots.pop(snapshot_id, None)
        if snap is None:
            raise not_found()
        self.store.snapshot_file(snap.id).unlink(missing_ok=True)
        log.info("deleted snapshot %s", snap.id)
        return 204, None


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DoError(422, f"{key} must be a string, got {value!r}")
    return value


def _integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise DoError(422, f"{key} must be a positive integer, got {value!r}")
    return int(value)
