"""The `digitalocean` back-end: a volume is a DigitalOcean block storage volume, attached to this droplet while mounted.

Built on `BlockDriver`: this module only knows DigitalOcean (create, attach,
detach, resize, snapshot); the block layer makes the file system once,
mounts, grows it and recovers after a crash. Every volume convoy creates or
adopts carries the tags `convoy:volume` and `convoy:name:<Docker name>`
(`do_names`), so every droplet of the region lists it under its Docker name
and the same Docker name means the same DO volume everywhere (scope
`global`): Docker's remove drops only this host's reference, `convoy delete`
destroys the DO volume.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from app.errors import Conflict, InvalidInput, NotFound, Unavailable
from app.fs import filesystems
from app.storage.block import Attachment, BlockDriver, Where
from app.storage.do_identity import Droplet, this_droplet
from app.storage.do_names import name_from_tags, name_tag, volume_name
from app.storage.do_options import (
    DAEMON_OPTIONS,
    UUID,
    VOLUME_OPTIONS,
    VolumeRequest,
    daemon_options,
    size_in_gib,
    volume_request,
)
from app.storage.driver import BlockSource, CreatedVolume, Details, SharedVolume, SnapshotRef, VolumeRef, VolumeSpec
from app.storage.option_values import GIB

if TYPE_CHECKING:  # python-digitalocean and requests cost 80 ms: imported when the back-end starts
    from app.storage.do_api import DoApi

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "DO_TOKEN"  # noqa: S105 - the name of the variable, not a token
TAG_VOLUME = "convoy:volume"
TAG_SNAPSHOT = "convoy:snapshot"
TAG_BACKUP = "convoy:backup"  # a DO snapshot kept as a backup (do://): a snapshot delete leaves it
TAG_HOST = "convoy:host:"  # + the droplet that created the volume
TAG_TEMPORARY = "convoy:temporary:"  # + the droplet reading a snapshot through a volume made from it
BACKUP_URL = re.compile(r"^do://([^/]*)/(.*)$")
DEVICE_TIMEOUT = 30.0
DETACH_TIMEOUT = 60.0
RESIZE_TIMEOUT = 60.0
DEVICE_PREFIX = "scsi-0DO_Volume_"  # how udev names a DO volume: /dev/disk/by-id/scsi-0DO_Volume_<name>


class DoDriver(BlockDriver):
    name = "digitalocean"
    option_prefix = "do"
    daemon_options: ClassVar[dict[str, str]] = DAEMON_OPTIONS
    volume_options: ClassVar[dict[str, str]] = {**BlockDriver.volume_options, **VOLUME_OPTIONS}
    can_resize = True
    native_backup_scheme = "do"

    def __init__(self, options: dict[str, str], state_dir: Path):
        super().__init__(options, state_dir)
        self.settings = daemon_options(options)  # a wrong option stops the daemon's start, with the reason
        self._droplet: Droplet | None = None
        self._api: DoApi | None = None

    @property
    def data_outside_host(self) -> bool:
        return True

    # start-up: who this droplet is, and an API client

    def start(self) -> None:
        token = self._token()
        found = this_droplet() if not (self.settings.droplet_id and self.settings.region) else None
        droplet_id = self.settings.droplet_id or (found.droplet_id if found else 0)
        from app.storage.do_api import DoApi

        api = DoApi(token, self.settings.api_endpoint)
        described = api.droplet(droplet_id)  # the token and the endpoint are checked now, not at first use
        actual = str((described.get("region") or {}).get("slug") or "")
        region = self.settings.region or (found.region if found else actual)
        if actual and region != actual:
            raise InvalidInput(
                f"do.region={region} but droplet {droplet_id} is in {actual}: volumes attach only to droplets of their "
                "region; drop do.region or set it to the droplet's"
            )
        self._droplet = Droplet(droplet_id, region)
        self._api = api
        self._remove_temporary_volumes()

    def _token(self) -> str:
        path = self.settings.token_file
        if path is not None:
            try:
                token = path.read_text().strip()
            except OSError as err:
                raise Unavailable(f"do.token_file={path} cannot be read ({err.strerror}); give a readable file") from None
            if not token:
                raise Unavailable(f"do.token_file={path} is empty; put the DigitalOcean API token in it")
            return token
        token = os.environ.get(TOKEN_VARIABLE, "").strip()
        if not token:
            raise Unavailable(
                "no DigitalOcean API token: set DO_TOKEN (`docker plugin set convoy DO_TOKEN=...`) or do.token_file=PATH"
            )
        return token

    @property
    def droplet(self) -> Droplet:
        if self._droplet is None:
            raise Unavailable("the digitalocean back-end has not started yet; try again in a moment")
        return self._droplet

    @property
    def api(self) -> DoApi:
        if self._api is None:
            raise Unavailable("the digitalocean back-end has not started yet; try again in a moment")
        return self._api

    def _remove_temporary_volumes(self) -> None:
        """Volumes made to read a snapshot for a backup that a crash interrupted."""
        mine = f"{TAG_TEMPORARY}{self.droplet.droplet_id}"
        for volume in self.api.volumes(self.droplet.region):
            if mine not in _tags(volume):
                continue
            ref = _ref_of(volume)
            log.info("deleting %s: a temporary volume of a backup interrupted by a crash", volume["name"])
            try:
                self.detach(ref)
                self.destroy_device(ref)
            except Exception:  # start-up goes on; the next start tries again
                log.exception("could not delete the temporary volume %s", volume["name"])

    # the device

    def create_device(self, spec: VolumeSpec) -> CreatedVolume:
        request = volume_request(spec.options, spec.size, self.settings.default_size_gib)
        name_tag(spec.name)  # a name too long for its tag is refused before anything is made
        if request.adopting:
            return self._adopt(spec.name, request)
        existing = self._find(spec.name)
        if existing is not None:  # made by another droplet, or by this one before a crash: the name means it
            return self._adopted(spec.name, existing, request)
        size_gib = request.size_gib
        if request.snapshot_id:
            size_gib = max(size_gib, self._snapshot_size(request.snapshot_id))
        if spec.size is not None and size_gib * GIB != spec.size:
            log.info("volume %s is %dG: DigitalOcean sizes volumes in whole GiB (asked %d bytes)", spec.name, size_gib, spec.size)
        do_name = volume_name(spec.name)
        description = f"convoy volume {spec.name}"
        try:
            volume = self.api.create_volume(
                name=do_name,
                region=self.droplet.region,
                size_gib=size_gib,
                description=f"{request.description} ({description})" if request.description else description,
                tags=[TAG_VOLUME, name_tag(spec.name), f"{TAG_HOST}{self.droplet.droplet_id}", *request.tags],
                snapshot_id=request.snapshot_id,
            )
        except Conflict as err:
            made = self._find(spec.name)  # a create retried after a 5xx whose first try DO did carry out
            if made is None or name_from_tags(_tags(made)) != spec.name:
                raise Conflict(
                    f"{err}: a DigitalOcean volume named {do_name} exists in {self.droplet.region} and is not convoy's; "
                    f"adopt it (-o do_name={do_name}) or pick another name"
                ) from None
            volume = made
        return CreatedVolume(self._details(volume, request), size=int(volume["size_gigabytes"]) * GIB)

    def _find(self, name: str) -> dict[str, Any] | None:
        """The DO volume of this region that is convoy volume `name`: tagged with it, or named what the name maps to
        and no other convoy volume (made by hand in the control panel, as docker-volume-plugin-dostorage had users do)."""
        do_name = volume_name(name)
        for volume in self.api.volumes(self.droplet.region):
            owner = name_from_tags(_tags(volume))
            if owner == name or (owner is None and volume["name"] == do_name):
                return volume
        return None

    def _snapshot_size(self, snapshot_id: str) -> int:
        """The smallest volume (GiB) the snapshot makes; InvalidInput when it is not usable here."""
        try:
            snapshot = self.api.snapshot(snapshot_id)
        except NotFound:
            raise NotFound(f"DigitalOcean snapshot {snapshot_id} does not exist: see `doctl compute snapshot list`") from None
        regions = snapshot.get("regions") or []
        if self.droplet.region not in regions:
            raise InvalidInput(
                f"DigitalOcean snapshot {snapshot_id} is in {', '.join(regions) or 'no region'}, this droplet in "
                f"{self.droplet.region}: a volume can only be made from a snapshot of its own region"
            )
        if snapshot.get("resource_type") not in (None, "volume"):
            raise InvalidInput(f"DigitalOcean snapshot {snapshot_id} is of a droplet, not a volume: give a volume snapshot")
        return int(snapshot.get("min_disk_size") or 1)

    def _adopt(self, name: str, request: VolumeRequest) -> CreatedVolume:
        if request.adopt_id:
            try:
                volume = self.api.volume(request.adopt_id)
            except NotFound:
                raise NotFound(
                    f"DigitalOcean volume {request.adopt_id} does not exist: see `doctl compute volume list`"
                ) from None
        else:
            found = self.api.volumes(self.droplet.region, name=request.adopt_name)
            if not found:
                raise NotFound(
                    f"no DigitalOcean volume named {request.adopt_name} in {self.droplet.region}: see `doctl compute volume list`"
                )
            volume = found[0]
        return self._adopted(name, volume, request)

    def _adopted(self, name: str, volume: dict[str, Any], request: VolumeRequest) -> CreatedVolume:
        region = _region(volume)
        if region != self.droplet.region:
            raise InvalidInput(
                f"DigitalOcean volume {volume['name']} ({volume['id']}) is in {region}, this droplet in {self.droplet.region}: "
                "a volume attaches only to droplets of its region (back it up to s3:// there and restore here)"
            )
        tags = _tags(volume)
        owner = name_from_tags(tags)
        if owner not in (None, name):
            raise Conflict(
                f"DigitalOcean volume {volume['name']} ({volume['id']}) is convoy volume {owner}; adopt it under that name"
            )
        if owner is None:
            for tag in (TAG_VOLUME, name_tag(name)):
                self.api.tag(tag, str(volume["id"]), "volume")
        return CreatedVolume(self._details(volume, request), size=int(volume["size_gigabytes"]) * GIB, adopted=True)

    def _details(self, volume: dict[str, Any], request: VolumeRequest | None = None) -> Details:
        details: Details = {"volume_id": str(volume["id"]), "do_name": str(volume["name"]), "region": _region(volume)}
        if request is not None and request.force_detach is not None:
            details["force_detach"] = str(request.force_detach).lower()
        return details

    def destroy_device(self, volume: VolumeRef) -> None:
        try:
            self.api.destroy_volume(_volume_id(volume))
        except NotFound:
            return  # gone already
        except Conflict as err:
            raise Conflict(
                f"DigitalOcean did not destroy the volume of {volume.name}: {err}; if it has snapshots kept as backups "
                "(`convoy backup list do://`), delete them first"
            ) from None

    def attachment(self, volume: VolumeRef) -> Attachment:
        try:
            described = self.api.volume(_volume_id(volume))
        except NotFound:
            return Attachment(Where.DETACHED)  # destroyed outside convoy: `convoy delete` can still forget it
        holders = [int(d) for d in described.get("droplet_ids") or []]
        if self.droplet.droplet_id in holders:
            return Attachment(Where.HERE, device=self._wait_device(str(described["name"])))
        if holders:
            return Attachment(Where.ELSEWHERE, holder=str(holders[0]))
        return Attachment(Where.DETACHED)

    def attach(self, volume: VolumeRef) -> str:
        volume_id = _volume_id(volume)
        self._check_region(volume)
        me = self.droplet.droplet_id
        deadline = time.monotonic() + self.settings.attach_timeout
        what = f"attaching {volume.name} ({volume_id}) to droplet {me}"
        todo = "DigitalOcean may be slow or the attachment stuck: see `doctl compute volume-action list`, then mount again"
        try:
            self._settle(volume_id, deadline, what, todo)
        except NotFound:
            raise NotFound(
                f"DigitalOcean volume {volume_id} of {volume.name} does not exist any more (destroyed outside convoy?); "
                f"`convoy delete {volume.name}` forgets it"
            ) from None
        attachment = self.attachment(volume)  # an attach a timed-out mount left may have completed since
        if attachment.where is Where.HERE and attachment.device:
            return attachment.device
        try:
            action = self.api.volume_action(volume_id, "attach", self.droplet.region, droplet_id=me)
        except InvalidInput:  # 422: an attach retried after a 5xx whose first try DO did start
            self._settle(volume_id, deadline, what, todo)
            attachment = self.attachment(volume)
            if attachment.where is Where.HERE and attachment.device:
                return attachment.device
            raise
        try:
            self.api.wait_action(action, deadline, what, todo)
        except Unavailable:
            self._detach_quietly(volume)
            raise
        return self._wait_device(str(volume.details.get("do_name") or self.api.volume(volume_id)["name"]))

    def _settle(self, volume_id: str, deadline: float, what: str, todo: str) -> None:
        """Wait for the volume's actions still in progress (an attach a timed-out mount left): DO refuses another."""
        for action in self.api.volume_actions(volume_id):
            if action.get("status") == "in-progress":
                self.api.wait_action(action, deadline, what, todo)

    def detach(self, volume: VolumeRef) -> None:
        volume_id = _volume_id(volume)
        me = self.droplet.droplet_id
        if me not in [int(d) for d in self.api.volume(volume_id).get("droplet_ids") or []]:
            return  # an attach still in progress (a timed-out mount's) is left to finish: the next mount uses it
        self._detach_from(volume, me)

    def _detach_from(self, volume: VolumeRef, droplet_id: int) -> None:
        volume_id = _volume_id(volume)
        deadline = time.monotonic() + DETACH_TIMEOUT
        what = f"detaching {volume.name} ({volume_id}) from droplet {droplet_id}"
        todo = "something on that droplet may still use it; see `doctl compute volume-action list`"
        self._settle(volume_id, deadline, what, todo)
        if droplet_id not in [int(d) for d in self.api.volume(volume_id).get("droplet_ids") or []]:
            return
        action = self.api.volume_action(volume_id, "detach", self.droplet.region, droplet_id=droplet_id)
        self.api.wait_action(action, deadline, what, todo)

    def take_over(self, volume: VolumeRef, attachment: Attachment) -> None:
        holder = int(attachment.holder or 0)
        volume_id = _volume_id(volume)
        described = self.api.droplet(holder)
        status = str(described.get("status") or "unknown")
        which = f"droplet {holder} ({described.get('name') or 'unnamed'})"
        if status != "off":
            raise Conflict(
                f"volume {volume.name} ({volume_id}) is attached to {which}, which is {status}: "
                "stop the containers that use it there first"
            )
        if not (self.settings.force_detach or volume.details.get("force_detach") == "true"):
            raise Conflict(
                f"volume {volume.name} ({volume_id}) is attached to {which}, which is powered off: detach it there, or "
                "allow convoy to force it (`-o force_detach=true` when creating the volume, or do.force_detach=true "
                "for the daemon)"
            )
        log.warning("force-detaching %s (%s) from powered-off %s", volume.name, volume_id, which)
        self._detach_from(volume, holder)

    def grow_device(self, volume: VolumeRef, size: int) -> Details:
        volume_id = _volume_id(volume)
        gib = size_in_gib(size)
        self._check_region(volume)
        action = self.api.volume_action(volume_id, "resize", self.droplet.region, size_gib=gib)
        self.api.wait_action(
            action,
            time.monotonic() + RESIZE_TIMEOUT,
            f"growing {volume.name} ({volume_id}) to {gib}G",
            "run `convoy resize` again later",
        )
        attachment = self.attachment(volume)
        if attachment.device:
            device = attachment.device
            self.api.wait(
                f"{device} showing the new size of {volume.name}",
                lambda: filesystems.size_of(device) >= gib * GIB,
                time.monotonic() + DEVICE_TIMEOUT,
                "check the droplet's kernel log",
            )
        return dict(volume.details)

    # views

    def status(self, volume: VolumeRef) -> Details:
        return dict(volume.details)  # no API call: Docker's List shows every volume's status

    def shared_volumes(self) -> list[SharedVolume]:
        found = []
        for volume in self.api.volumes(self.droplet.region):
            tags = _tags(volume)
            name = name_from_tags(tags)
            if name is None or TAG_VOLUME not in tags or any(t.startswith(TAG_TEMPORARY) for t in tags):
                continue
            found.append(
                SharedVolume(
                    name=name,
                    size=int(volume["size_gigabytes"]) * GIB,
                    created_at=str(volume.get("created_at") or ""),
                    details=self._details(volume),
                )
            )
        return found

    # snapshots: DO volume snapshots, taken with the file system frozen

    def create_snapshot(self, volume: VolumeRef, snapshot: str) -> Details:
        volume_id = _volume_id(volume)
        with self.consistent(volume):  # DO takes the point in time when the call returns
            made = self.api.create_snapshot(volume_id, snapshot, [TAG_SNAPSHOT, name_tag(volume.name)])
        return {"snapshot_id": str(made["id"]), "volume_id": volume_id, "method": "do-snapshot"}

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        snapshot_id = snapshot.details.get("snapshot_id")
        if not isinstance(snapshot_id, str):
            return
        try:
            described = self.api.snapshot(snapshot_id)
        except NotFound:
            return  # gone already
        if TAG_BACKUP in _tags(described):
            log.info("keeping DigitalOcean snapshot %s of snapshot %s: it is a backup", snapshot_id, snapshot.name)
            return
        with contextlib.suppress(NotFound):
            self.api.delete_snapshot(snapshot_id)

    @contextmanager
    def open_block_snapshot(self, snapshot: SnapshotRef, since: SnapshotRef | None) -> Iterator[BlockSource]:
        """A temporary volume made from the snapshot, attached here and read whole (DO lists no changed blocks),
        then detached and destroyed."""
        snapshot_id = str(snapshot.details["snapshot_id"])
        digest = hashlib.sha256(f"{snapshot_id}@{self.droplet.droplet_id}".encode()).hexdigest()[:12]
        made = self.api.create_volume(
            name=f"convoy-read-{digest}",
            region=self.droplet.region,
            size_gib=self._snapshot_size(snapshot_id),
            description=f"convoy: reading snapshot {snapshot.name} of {snapshot.volume.name} for a backup",
            tags=[f"{TAG_TEMPORARY}{self.droplet.droplet_id}"],
            snapshot_id=snapshot_id,
        )
        reader = _ref_of(made)
        try:
            device = self.attach(reader)
            try:
                yield BlockSource(path=device, size=filesystems.size_of(device))
            finally:
                self.detach(reader)
        finally:
            self.destroy_device(reader)

    # do:// backups: the DO snapshot itself, kept (do://REGION/SNAPSHOT_ID, as ebs://REGION/snap-...)

    def keep_as_backup(self, snapshot: SnapshotRef) -> str:
        snapshot_id = str(snapshot.details["snapshot_id"])
        self.api.tag(TAG_BACKUP, snapshot_id, "volume_snapshot")
        return f"do://{self.droplet.region}/{snapshot_id}"

    def native_backup_options(self, url: str) -> dict[str, str]:
        snapshot_id = self._snapshot_of(url)
        self._snapshot_size(snapshot_id)  # it exists, here
        return {"snapshot": snapshot_id}

    def list_native_backups(self, volume: str | None) -> list[Details]:
        rows = []
        for snapshot in self.api.all_volume_snapshots():
            tags = _tags(snapshot)
            owner = name_from_tags(tags)
            if TAG_BACKUP not in tags or (volume is not None and owner != volume):
                continue
            regions = snapshot.get("regions") or [self.droplet.region]
            region = self.droplet.region if self.droplet.region in regions else regions[0]
            rows.append(
                {
                    "url": f"do://{region}/{snapshot['id']}",
                    "name": str(snapshot["id"]),
                    "volume": owner,
                    "snapshot": snapshot.get("name"),
                    "created_at": snapshot.get("created_at"),
                    "volume_size": int(snapshot.get("min_disk_size") or 0) * GIB,
                    "source": "do-snapshot",
                }
            )
        return sorted(rows, key=lambda row: (row["volume"] or "", row["created_at"] or ""))

    def delete_native_backup(self, url: str) -> None:
        snapshot_id = self._snapshot_of(url)
        try:
            self.api.delete_snapshot(snapshot_id)
        except NotFound:
            raise NotFound(f"{url}: DigitalOcean snapshot {snapshot_id} does not exist (deleted already?)") from None

    def _snapshot_of(self, url: str) -> str:
        """The snapshot id of do://REGION/SNAPSHOT_ID, in this droplet's region."""
        match = BACKUP_URL.fullmatch(url)
        if match is None or not UUID.fullmatch(match.group(2)):
            raise InvalidInput(
                f"{url!r} is not a DigitalOcean backup URL: use do://REGION/SNAPSHOT_ID (as `convoy backup create` prints)"
            )
        region, snapshot_id = match.groups()
        if region != self.droplet.region:
            raise InvalidInput(
                f"DigitalOcean snapshot {snapshot_id} is in {region}, this droplet in {self.droplet.region}: volume snapshots "
                "stay in their region; restore it on a droplet there, or back it up to s3:// and restore that here"
            )
        return snapshot_id

    # helpers

    def _check_region(self, volume: VolumeRef) -> None:
        """A volume of another region cannot attach here: said before any call that would fail."""
        region = volume.details.get("region")
        if region and region != self.droplet.region:
            raise InvalidInput(
                f"volume {volume.name} is a DigitalOcean volume in {region}, this droplet is in {self.droplet.region}: "
                "volumes attach only to droplets of their region; use it from a droplet there"
            )

    def _wait_device(self, do_name: str) -> str:
        link = self.settings.dev_root / "disk" / "by-id" / f"{DEVICE_PREFIX}{do_name}"
        deadline = time.monotonic() + DEVICE_TIMEOUT
        while not link.exists():
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"DigitalOcean volume {do_name} is attached to this droplet but {link} did not appear within "
                    f"{DEVICE_TIMEOUT:.0f} s; check the droplet's kernel log"
                )
            time.sleep(0.2)
        return os.path.realpath(link)


def _tags(resource: dict[str, Any]) -> list[str]:
    return [str(tag) for tag in resource.get("tags") or []]


def _region(volume: dict[str, Any]) -> str:
    region = volume.get("region")
    return str(region.get("slug") if isinstance(region, dict) else region or "")


def _ref_of(volume: dict[str, Any]) -> VolumeRef:
    return VolumeRef(
        str(volume["name"]), None, {"volume_id": str(volume["id"]), "do_name": str(volume["name"]), "region": _region(volume)}
    )


def _volume_id(volume: VolumeRef) -> str:
    volume_id = volume.details.get("volume_id")
    if not isinstance(volume_id, str):
        raise NotFound(
            f"volume {volume.name} has no DigitalOcean volume id in convoy's catalog; delete it with `convoy delete -r`"
        )
    return volume_id
