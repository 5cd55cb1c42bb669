"""The `ebs` back-end: a volume is an Amazon EBS volume, attached to this instance while mounted.

Built on `BlockDriver`: this module only knows EBS (create, attach, detach,
snapshot, modify); the block layer makes the file system once, mounts,
grows it and recovers after a crash. Every volume convoy creates is tagged
`convoy:volume=<name>` (and `convoy:host`), so every host of the account
and AZ lists it and the same Docker name means the same EBS volume
everywhere (scope `global`): Docker's remove drops only this host's
reference, `convoy delete` deletes the EBS volume.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from app.errors import Conflict, InvalidInput, NotFound, SnapshotFailed, Unavailable
from app.fs import filesystems
from app.storage.block import Attachment, BlockDriver, Where
from app.storage.driver import BlockSource, CreatedVolume, Details, SharedVolume, SnapshotRef, VolumeRef, VolumeSpec
from app.storage.ebs_devices import free_name, local_device
from app.storage.ebs_options import GIB, default_size_option, parse_bool, volume_request
from app.storage.ec2_api import Ec2, host_lock
from app.storage.ec2_identity import Instance, this_instance
from app.storage.option_values import seconds_option

log = logging.getLogger(__name__)

TAG_VOLUME = "convoy:volume"
TAG_HOST = "convoy:host"
TAG_TEMPORARY = "convoy:temporary"  # a volume made from a snapshot to read it for a backup
TAG_BACKUP = "convoy:backup"  # an EBS snapshot kept as a backup (ebs://): a snapshot delete leaves it
SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8,17}$")
ATTACH_TIMEOUT = 45.0  # seconds: Docker gives a Mount 2 minutes, and a mount also makes a file system
DEVICE_TIMEOUT = 30.0
DETACH_TIMEOUT = 60.0
CREATE_TIMEOUT = 60.0
SNAPSHOT_TIMEOUT = 600.0
STOPPED = ("stopped", "stopping", "shutting-down", "terminated")


class EbsDriver(BlockDriver):
    name = "ebs"
    daemon_options: ClassVar[dict[str, str]] = {
        "ebs.region": "AWS region (default: this instance's, from its metadata)",
        "ebs.az": "availability zone for new volumes (default: this instance's)",
        "ebs.instance_id": "this instance's id (default: from its metadata)",
        "ebs.default_size": "size of a volume created without one (default 10G)",
        "ebs.default_type": "volume type of a volume created without one (default gp3)",
        "ebs.encrypted": "true/false: encrypt new volumes (default true)",
        "ebs.kms_key_id": "KMS key for encrypted volumes (default: the account's EBS key)",
        "ebs.force_detach": "true/false: detach volumes held by a stopped instance (default false)",
        "ebs.endpoint": "EC2 API endpoint URL (EC2-compatible clouds, tests)",
        "ebs.dev_root": "where the kernel's devices appear (default /dev)",
        "ebs.attach_timeout": f"seconds an attach may take before a mount gives up (default {ATTACH_TIMEOUT:.0f})",
        "ebs.create_timeout": f"seconds a create waits for EC2 to make the volume (default {CREATE_TIMEOUT:.0f})",
        "ebs.tag.KEY": "a tag KEY=VALUE added to every volume and snapshot convoy creates",
    }
    volume_options: ClassVar[dict[str, str]] = {
        **BlockDriver.volume_options,
        "type": "EBS volume type: gp3 (default), gp2, io1, io2, st1, sc1",
        "iops": "provisioned IOPS (gp3, io1, io2; required for io1 and io2)",
        "throughput": "MiB/s (gp3 only)",
        "encrypted": "true/false (default: ebs.encrypted, itself true)",
        "kms_key_id": "KMS key for this volume",
        "id": "adopt this existing EBS volume (vol-...) instead of creating one",
        "snapshot": "create the volume from this EBS snapshot (snap-...)",
        "az": "availability zone (default: this instance's)",
        "force_detach": "true/false: may detach it from a stopped instance that holds it",
    }
    can_resize = True
    native_backup_scheme = "ebs"

    def __init__(self, options: dict[str, str], state_dir: Path):
        self.tags = {key[len("ebs.tag.") :]: value for key, value in options.items() if key.startswith("ebs.tag.")}
        super().__init__({k: v for k, v in options.items() if not k.startswith("ebs.tag.")}, state_dir)
        self.options = options
        self.dev_root = Path(options.get("ebs.dev_root") or "/dev")
        self.default_size = default_size_option(options.get("ebs.default_size") or "10G")
        self.default_type = options.get("ebs.default_type") or "gp3"
        self.encrypted = parse_bool(options.get("ebs.encrypted", "true"), "ebs.encrypted")
        self.force_detach = parse_bool(options.get("ebs.force_detach", "false"), "ebs.force_detach")
        self.attach_timeout = seconds_option(options.get("ebs.attach_timeout"), ATTACH_TIMEOUT, "ebs.attach_timeout")
        self.create_timeout = seconds_option(options.get("ebs.create_timeout"), CREATE_TIMEOUT, "ebs.create_timeout")
        self._instance: Instance | None = None
        self._ec2: Ec2 | None = None

    @property
    def data_outside_host(self) -> bool:
        return True

    # start-up: who this host is, and an API client

    def start(self) -> None:
        instance_id, region, zone = (self.options.get(f"ebs.{key}") for key in ("instance_id", "region", "az"))
        found = this_instance() if not (instance_id and region and zone) else None
        self._instance = Instance(
            instance_id or (found.instance_id if found else ""),
            region or (found.region if found else ""),
            zone or (found.availability_zone if found else ""),
        )
        self._ec2 = Ec2(self._instance.region, self.options.get("ebs.endpoint") or None)
        self.ec2.instance(self.instance.instance_id)  # credentials and endpoint checked now, not at first use
        self._remove_temporary_volumes()

    @property
    def instance(self) -> Instance:
        if self._instance is None:
            raise Unavailable("the ebs back-end has not started yet; try again in a moment")
        return self._instance

    @property
    def ec2(self) -> Ec2:
        if self._ec2 is None:
            raise Unavailable("the ebs back-end has not started yet; try again in a moment")
        return self._ec2

    def _remove_temporary_volumes(self) -> None:
        """Volumes made to read a snapshot for a backup that a crash interrupted."""
        for volume in self.ec2.volumes_tagged(TAG_TEMPORARY, self.instance.instance_id):
            ref = VolumeRef(volume["VolumeId"], None, {"volume_id": volume["VolumeId"]})
            log.info("deleting %s: a temporary volume of a backup interrupted by a crash", volume["VolumeId"])
            try:
                self.detach(ref)
                self.destroy_device(ref)
            except Exception:  # start-up goes on; the next start tries again
                log.exception("could not delete the temporary volume %s", volume["VolumeId"])

    # the device

    def create_device(self, spec: VolumeSpec) -> CreatedVolume:
        if spec.options.get("id"):
            return self._adopt(spec.name, spec.options["id"])
        for existing in self.ec2.volumes_tagged(TAG_VOLUME, spec.name):
            if existing["State"] not in ("deleting", "deleted", "error"):
                # made by another host, or by this one before a crash: the name means this volume
                return self._adopt(spec.name, existing["VolumeId"])
        request = volume_request(
            spec.options,
            spec.size,
            default_size=self.default_size,
            default_type=self.default_type,
            encrypted_by_default=self.encrypted,
            default_kms_key=self.options.get("ebs.kms_key_id"),
            availability_zone=self.instance.availability_zone,
        )
        params: dict[str, Any] = {
            "AvailabilityZone": request.availability_zone,
            "Size": request.size_gib,
            "VolumeType": request.volume_type,
            "Encrypted": request.encrypted,
            "TagSpecifications": [{"ResourceType": "volume", "Tags": self._tags(spec.name)}],
            # a retried create (a dropped answer) makes one volume, not two
            "ClientToken": hashlib.sha256(f"{spec.name}@{spec.created_at}".encode()).hexdigest()[:64],
        }
        for key, value in (("Iops", request.iops), ("Throughput", request.throughput), ("KmsKeyId", request.kms_key_id)):
            if value is not None:
                params[key] = value
        if spec.options.get("snapshot"):
            params["SnapshotId"] = spec.options["snapshot"]
        volume_id = str(self.ec2.call("create_volume", **params)["VolumeId"])
        self._wait_created(spec.name, volume_id)
        size = int(self.ec2.volume(volume_id)["Size"]) * GIB
        details = {"volume_id": volume_id, "az": request.availability_zone, "type": request.volume_type}
        if spec.options.get("force_detach"):
            details["force_detach"] = str(parse_bool(spec.options["force_detach"], "force_detach")).lower()
        return CreatedVolume(details, size=size)

    def _wait_created(self, name: str, volume_id: str) -> None:
        """Docker gives a create 2 minutes; past our deadline EC2 goes on, and the next create of the same name
        takes that volume (found by its tag) rather than making a second one."""
        self._wait_state(
            volume_id,
            "available",
            self.create_timeout,
            f"creating EBS volume {volume_id} for {name}",
            f"EC2 goes on making it: create {name} again in a minute and convoy takes that volume "
            f"(tagged {TAG_VOLUME}={name}) instead of making a second one",
        )

    def _adopt(self, name: str, volume_id: str) -> CreatedVolume:
        volume = self.ec2.volume(volume_id)
        if volume["State"] == "creating":  # made by an earlier create that gave up waiting
            self._wait_created(name, volume_id)
        zone = str(volume["AvailabilityZone"])
        if zone != self.instance.availability_zone:
            raise InvalidInput(
                f"EBS volume {volume_id} is in {zone}, this instance in {self.instance.availability_zone}: "
                "a volume can only attach to instances of its own availability zone (snapshot it and create "
                "the volume from that snapshot here)"
            )
        tags = {tag["Key"]: tag["Value"] for tag in volume.get("Tags", [])}
        if tags.get(TAG_VOLUME) not in (None, name):
            raise Conflict(f"EBS volume {volume_id} is already convoy volume {tags[TAG_VOLUME]}; adopt it under that name")
        if TAG_VOLUME not in tags:
            self.ec2.call("create_tags", Resources=[volume_id], Tags=[{"Key": TAG_VOLUME, "Value": name}])
        return CreatedVolume(
            {"volume_id": volume_id, "az": zone, "type": volume.get("VolumeType")}, size=int(volume["Size"]) * GIB, adopted=True
        )

    def destroy_device(self, volume: VolumeRef) -> None:
        with contextlib.suppress(NotFound):  # gone already
            self.ec2.call("delete_volume", VolumeId=_volume_id(volume))

    def attachment(self, volume: VolumeRef) -> Attachment:
        volume_id = _volume_id(volume)
        described = self.ec2.volume(volume_id)
        for attached in described.get("Attachments", []):
            state = attached.get("State")
            if state not in ("attaching", "attached"):
                continue
            holder = str(attached["InstanceId"])
            if holder != self.instance.instance_id:
                return Attachment(Where.ELSEWHERE, holder=holder)
            device = self._wait_device(volume_id, attached.get("Device"))
            return Attachment(Where.HERE, device=device)
        return Attachment(Where.DETACHED)

    def attach(self, volume: VolumeRef) -> str:
        volume_id = _volume_id(volume)
        me = self.instance.instance_id
        with host_lock(str(self.state_dir / "ebs-attach.lock")):  # device names are chosen one at a time
            instance = self.ec2.instance(me)
            in_use = [mapping["DeviceName"] for mapping in instance.get("BlockDeviceMappings", [])]
            name = free_name(in_use)
            if name is None:
                raise Unavailable(f"instance {me} has no free device name left for {volume.name}: detach a volume first")
            self.ec2.call("attach_volume", VolumeId=volume_id, InstanceId=me, Device=name)
            try:
                self._wait_attached(volume_id)
            except Unavailable:
                self._detach_quietly(volume)
                raise
        return self._wait_device(volume_id, name)

    def detach(self, volume: VolumeRef) -> None:
        volume_id = _volume_id(volume)
        me = self.instance.instance_id
        attached = [a for a in self.ec2.volume(volume_id).get("Attachments", []) if a.get("InstanceId") == me]
        if not attached or all(a.get("State") == "detached" for a in attached):
            return
        with contextlib.suppress(Conflict, NotFound):  # detaching or detached already
            self.ec2.call("detach_volume", VolumeId=volume_id, InstanceId=me)
        self._wait_detached(volume_id, me)

    def take_over(self, volume: VolumeRef, attachment: Attachment) -> None:
        holder = attachment.holder or "another instance"
        state = str(self.ec2.instance(holder)["State"]["Name"]) if attachment.holder else "unknown"
        volume_id = _volume_id(volume)
        if state not in STOPPED:
            raise Conflict(
                f"volume {volume.name} ({volume_id}) is attached to instance {holder}, which is {state}: "
                "stop the containers that use it there first"
            )
        allowed = self.force_detach or volume.details.get("force_detach") == "true"
        if not allowed:
            raise Conflict(
                f"volume {volume.name} ({volume_id}) is attached to instance {holder}, which is {state}: "
                "detach it there, or allow convoy to force it (`-o force_detach=true` when creating the volume, "
                "or ebs.force_detach=true for the daemon)"
            )
        log.warning("force-detaching %s (%s) from %s instance %s", volume.name, volume_id, state, holder)
        self.ec2.call("detach_volume", VolumeId=volume_id, InstanceId=holder, Force=True)
        self._wait_detached(volume_id, holder)

    def grow_device(self, volume: VolumeRef, size: int) -> Details:
        volume_id = _volume_id(volume)
        self.ec2.call("modify_volume", VolumeId=volume_id, Size=-(-size // GIB))

        def modified() -> bool:
            answer = self.ec2.call("describe_volumes_modifications", VolumeIds=[volume_id])
            states = [m.get("ModificationState") for m in answer.get("VolumesModifications", [])]
            if "failed" in states:
                raise Unavailable(f"EC2 could not grow {volume_id}: see its modification in the AWS console")
            return bool(states) and all(s in ("optimizing", "completed") for s in states)

        self.ec2.wait(f"growing {volume_id}", modified, time.monotonic() + CREATE_TIMEOUT, "run `convoy resize` again later")
        attachment = self.attachment(volume)
        if attachment.device:
            device = attachment.device
            self.ec2.wait(
                f"{device} showing the new size of {volume_id}",
                lambda: filesystems.size_of(device) >= size,
                time.monotonic() + DEVICE_TIMEOUT,
                "check the instance's kernel log",
            )
        return dict(volume.details)

    # views

    def status(self, volume: VolumeRef) -> Details:
        return dict(volume.details)  # no AWS call: Docker's List shows every volume's status

    def shared_volumes(self) -> list[SharedVolume]:
        found = []
        for volume in self.ec2.volumes_tagged(TAG_VOLUME):
            tags = {tag["Key"]: tag["Value"] for tag in volume.get("Tags", [])}
            if volume.get("AvailabilityZone") != self.instance.availability_zone or TAG_TEMPORARY in tags:
                continue
            if volume["State"] in ("deleting", "deleted", "error"):
                continue
            found.append(
                SharedVolume(
                    name=tags[TAG_VOLUME],
                    size=int(volume["Size"]) * GIB,
                    created_at=volume["CreateTime"].isoformat().replace("+00:00", "Z"),
                    details={"volume_id": volume["VolumeId"], "az": volume["AvailabilityZone"], "type": volume.get("VolumeType")},
                )
            )
        return found

    # snapshots: EBS snapshots, taken with the file system frozen

    def create_snapshot(self, volume: VolumeRef, snapshot: str) -> Details:
        volume_id = _volume_id(volume)
        tags = [*self._tags(volume.name), {"Key": "convoy:snapshot", "Value": snapshot}]
        with self.consistent(volume):  # EBS takes the point in time when the call returns
            answer = self.ec2.call(
                "create_snapshot",
                VolumeId=volume_id,
                Description=f"convoy snapshot {snapshot} of volume {volume.name}",
                TagSpecifications=[{"ResourceType": "snapshot", "Tags": tags}],
            )
        # pending: EC2 copies it in the background; finish_snapshot waits, snapshot_progress tells how far
        return {"snapshot_id": str(answer["SnapshotId"]), "volume_id": volume_id, "method": "ebs-snapshot", "state": "pending"}

    def finish_snapshot(self, snapshot: SnapshotRef) -> Details:
        if snapshot.details.get("state") != "pending":
            return dict(snapshot.details)
        snapshot_id = str(snapshot.details["snapshot_id"])

        def completed() -> bool:
            described = self._describe_snapshot(snapshot_id)
            if described["State"] == "error":
                raise SnapshotFailed(
                    f"EC2 gave up on EBS snapshot {snapshot_id} of {snapshot.volume.name}: "
                    f"{described.get('StateMessage') or 'no reason given'}; take the snapshot again"
                )
            return bool(described["State"] == "completed")

        self.ec2.wait(
            f"EBS snapshot {snapshot_id} of {snapshot.volume.name} completing",
            completed,
            time.monotonic() + SNAPSHOT_TIMEOUT,
            f"EC2 goes on copying it: `convoy snapshot inspect {snapshot.name}` shows its progress, and a backup "
            "of it waits for it to complete",
        )
        return {**snapshot.details, "state": "completed"}

    def snapshot_progress(self, snapshot: SnapshotRef) -> Details:
        if snapshot.details.get("state") != "pending":
            return {}
        described = self._describe_snapshot(str(snapshot.details["snapshot_id"]))
        return {"state": described["State"], "progress": described.get("Progress", "")}

    def _describe_snapshot(self, snapshot_id: str) -> dict[str, Any]:
        found = self.ec2.call("describe_snapshots", SnapshotIds=[snapshot_id]).get("Snapshots", [])
        if not found:
            raise NotFound(f"EBS snapshot {snapshot_id} does not exist in {self.instance.region}")
        return dict(found[0])

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        snapshot_id = snapshot.details.get("snapshot_id")
        if not snapshot_id:
            return
        with contextlib.suppress(NotFound):  # gone already
            if any(tag["Key"] == TAG_BACKUP for tag in self._describe_snapshot(snapshot_id).get("Tags", [])):
                log.info("keeping EBS snapshot %s of snapshot %s: it is a backup", snapshot_id, snapshot.name)
                return
            self.ec2.call("delete_snapshot", SnapshotId=snapshot_id)

    def _block_lists(
        self, snapshot_id: str, since: SnapshotRef | None
    ) -> tuple[list[tuple[int, int]] | None, list[tuple[int, int]] | None, str | None]:
        """What the EBS direct APIs say of the snapshot: the blocks that hold data, and those changed since
        `since`; None for what they cannot say (not offered, not allowed): the backup then reads it all."""
        try:
            data = self.ec2.block_ranges("list_snapshot_blocks", "Blocks", SnapshotId=snapshot_id)
        except Unavailable as err:
            log.info("reading all of %s: %s", snapshot_id, err)
            return None, None, None
        earlier = since.details.get("snapshot_id") if since is not None else None
        if not isinstance(earlier, str) or since is None:
            return data, None, None
        try:
            changed = self.ec2.block_ranges(
                "list_changed_blocks", "ChangedBlocks", FirstSnapshotId=earlier, SecondSnapshotId=snapshot_id
            )
        except Unavailable as err:
            log.info("reading all of %s, not only what changed since %s: %s", snapshot_id, earlier, err)
            return data, None, None
        return data, changed, since.name

    @contextmanager
    def open_block_snapshot(self, snapshot: SnapshotRef, since: SnapshotRef | None) -> Iterator[BlockSource]:
        """A temporary volume made from the snapshot, attached here and read where the EBS direct APIs
        say it holds data (only what changed since `since`, when they say), then detached and deleted."""
        snapshot_id = str(snapshot.details["snapshot_id"])
        answer = self.ec2.call(
            "create_volume",
            AvailabilityZone=self.instance.availability_zone,
            SnapshotId=snapshot_id,
            VolumeType="gp3",
            TagSpecifications=[
                {"ResourceType": "volume", "Tags": [{"Key": TAG_TEMPORARY, "Value": self.instance.instance_id}]}
            ],
        )
        reader = VolumeRef(str(answer["VolumeId"]), None, {"volume_id": answer["VolumeId"]})
        try:
            self._wait_state(reader.name, "available", CREATE_TIMEOUT, f"making a volume of {snapshot_id} to read it")
            data, changed, since_name = self._block_lists(snapshot_id, since)
            device = self.attach(reader)
            try:
                yield BlockSource(
                    path=device,
                    size=filesystems.size_of(device),
                    data_ranges=data,
                    changed_ranges=changed,
                    changed_since=since_name,
                )
            finally:
                self.detach(reader)
        finally:
            self.destroy_device(reader)

    # ebs:// backups: the EBS snapshot itself, kept (Convoy's form of URL: ebs://REGION/snap-...)

    def keep_as_backup(self, snapshot: SnapshotRef) -> str:
        snapshot_id = str(snapshot.details["snapshot_id"])
        self.ec2.call("create_tags", Resources=[snapshot_id], Tags=[{"Key": TAG_BACKUP, "Value": snapshot.volume.name}])
        return f"ebs://{self.instance.region}/{snapshot_id}"

    def native_backup_options(self, url: str) -> dict[str, str]:
        snapshot_id = self._snapshot_of(url)
        described = self._describe_snapshot(snapshot_id)
        if described["State"] != "completed":
            raise Conflict(f"EBS snapshot {snapshot_id} is {described['State']}: restore it when it has completed")
        return {"snapshot": snapshot_id}

    def list_native_backups(self, volume: str | None) -> list[Details]:
        tag = {"Name": f"tag:{TAG_BACKUP}", "Values": [volume]} if volume else {"Name": "tag-key", "Values": [TAG_BACKUP]}
        snapshots = self.ec2.call("describe_snapshots", OwnerIds=["self"], Filters=[tag])["Snapshots"]
        rows = []
        for snapshot in snapshots:
            tags = {t["Key"]: t["Value"] for t in snapshot.get("Tags", [])}
            rows.append(
                {
                    "url": f"ebs://{self.instance.region}/{snapshot['SnapshotId']}",
                    "name": snapshot["SnapshotId"],
                    "volume": tags.get(TAG_BACKUP),
                    "snapshot": tags.get("convoy:snapshot"),
                    "created_at": snapshot["StartTime"].isoformat().replace("+00:00", "Z"),
                    "volume_size": int(snapshot["VolumeSize"]) * GIB,
                    "source": "ebs-snapshot",
                    "state": snapshot["State"],
                }
            )
        return sorted(rows, key=lambda row: (row["volume"] or "", row["created_at"]))

    def delete_native_backup(self, url: str) -> None:
        self.ec2.call("delete_snapshot", SnapshotId=self._snapshot_of(url))

    def _snapshot_of(self, url: str) -> str:
        """The snapshot id of ebs://REGION/snap-..., in this instance's region."""
        rest = url[len("ebs://") :] if url.startswith("ebs://") else ""
        region, _, snapshot_id = rest.partition("/")
        if not SNAPSHOT_ID.match(snapshot_id):
            raise InvalidInput(f"{url!r} is not an EBS backup URL: use ebs://REGION/snap-... (as `convoy backup create` prints)")
        if region != self.instance.region:
            raise InvalidInput(
                f"EBS snapshot {snapshot_id} is in {region}, this instance in {self.instance.region}: copy it here first "
                f"(aws ec2 copy-snapshot --source-region {region} --source-snapshot-id {snapshot_id})"
            )
        return snapshot_id

    # helpers

    def _tags(self, name: str) -> list[dict[str, str]]:
        tags = {**self.tags, TAG_VOLUME: name, TAG_HOST: self.instance.instance_id}
        return [{"Key": key, "Value": value} for key, value in tags.items()]

    def _wait_state(self, volume_id: str, state: str, seconds: float, what: str, todo: str = "") -> None:
        def reached() -> bool:
            current = self.ec2.volume(volume_id)["State"]
            if current == "error":
                raise Unavailable(f"{what}: EC2 put the volume in state error")
            return bool(current == state)

        todo = todo or f"see `aws ec2 describe-volumes --volume-ids {volume_id}`"
        self.ec2.wait(what, reached, time.monotonic() + seconds, todo)

    def _wait_attached(self, volume_id: str) -> None:
        me = self.instance.instance_id

        def attached() -> bool:
            return any(
                a.get("InstanceId") == me and a.get("State") == "attached"
                for a in self.ec2.volume(volume_id).get("Attachments", [])
            )

        self.ec2.wait(
            f"attaching {volume_id} to {me}",
            attached,
            time.monotonic() + self.attach_timeout,
            "EC2 may be slow or the attachment stuck: see `aws ec2 describe-volumes`, then mount again",
        )

    def _wait_detached(self, volume_id: str, instance_id: str) -> None:
        def detached() -> bool:
            return not any(
                a.get("InstanceId") == instance_id and a.get("State") in ("attaching", "attached", "detaching")
                for a in self.ec2.volume(volume_id).get("Attachments", [])
            )

        self.ec2.wait(
            f"detaching {volume_id} from {instance_id}",
            detached,
            time.monotonic() + DETACH_TIMEOUT,
            "something on that instance may still use it; see `aws ec2 describe-volumes`",
        )

    def _wait_device(self, volume_id: str, attached_as: str | None) -> str:
        deadline = time.monotonic() + DEVICE_TIMEOUT
        while True:
            device = local_device(volume_id, attached_as, self.dev_root)
            if device is not None:
                return device
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"EBS volume {volume_id} is attached to this instance as {attached_as} but no device appeared "
                    f"under {self.dev_root} within {DEVICE_TIMEOUT:.0f} s; check the instance's kernel log"
                )
            time.sleep(0.2)


def _volume_id(volume: VolumeRef) -> str:
    volume_id = volume.details.get("volume_id")
    if not isinstance(volume_id, str):
        raise NotFound(f"volume {volume.name} has no EBS volume id in convoy's catalog; delete it with `convoy delete -r`")
    return volume_id

