"""The EC2 actions, as boto3 calls them: each takes the request's Params and returns the response body."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from tests.ec2lab import dataplane
from tests.ec2lab.config import Faults, Settings
from tests.ec2lab.model import ACCOUNT_ID, Attachment, Instance, Modification, Snapshot, Store, Volume, new_id
from tests.ec2lab.params import Params, matches, page
from tests.ec2lab.validation import check_volume
from tests.ec2lab.xmlout import Ec2Error, iso

log = logging.getLogger("ec2lab")
DEVICE_NAME = re.compile(r"/dev/(sd[b-z]|sd[f-p][1-6]|xvd[b-z]|xvd[b-c][a-z])")
INSTANCE_STATE_CODES = {"running": 16, "stopped": 80}


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def _attachment_xml(volume_id: str, a: Attachment) -> dict[str, Any]:
    return {
        "volumeId": volume_id,
        "instanceId": a.instance_id,
        "device": a.device,
        "status": a.state,
        "attachTime": iso(a.attach_time),
        "deleteOnTermination": False,
    }


class Cloud:
    def __init__(self, store: Store, settings: Settings, faults: Faults):
        self.store, self.settings, self.faults = store, settings, faults

    @property
    def s(self):
        return self.store.state

    def call(self, action: str, params: Params) -> dict[str, Any]:
        handler = getattr(self, f"do_{action}", None)
        if handler is None:
            raise Ec2Error("InvalidAction", f"The action {action} is not valid for this web service.")
        with self.store.lock:
            body = handler(params)
            if not action.startswith("Describe"):  # every change is on disk before its answer leaves
                self.store.save()
        return body

    # --- look-ups with AWS's not-found errors -------------------------------------------------------------------
    def volume(self, volume_id: str) -> Volume:
        if not volume_id.startswith("vol-"):
            raise Ec2Error("InvalidVolumeID.Malformed", f'Invalid id: "{volume_id}" (expecting "vol-...")')
        if volume_id not in self.s.volumes:
            raise Ec2Error("InvalidVolume.NotFound", f"The volume '{volume_id}' does not exist.")
        return self.s.volumes[volume_id]

    def snapshot(self, snapshot_id: str) -> Snapshot:
        if not snapshot_id.startswith("snap-"):
            raise Ec2Error("InvalidSnapshotID.Malformed", f'Invalid id: "{snapshot_id}" (expecting "snap-...")')
        if snapshot_id not in self.s.snapshots:
            raise Ec2Error("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist.")
        return self.s.snapshots[snapshot_id]

    def instance(self, instance_id: str) -> Instance:
        if instance_id not in self.s.instances:
            raise Ec2Error("InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist")
        return self.s.instances[instance_id]

    def zones(self) -> list[str]:
        region = self.settings.region
        return sorted({f"{region}{z}" for z in "abc"} | {i.az for i in self.s.instances.values()})

    # --- rendering ------------------------------------------------------------------------------------------------
    def volume_xml(self, v: Volume) -> dict[str, Any]:
        return {
            "volumeId": v.id,
            "size": v.size,
            "snapshotId": v.snapshot_id or "",
            "availabilityZone": v.az,
            "status": v.state,
            "createTime": iso(v.create_time),
            "attachmentSet": [_attachment_xml(v.id, v.attachment)] if v.attachment else [],
            "tagSet": _tag_list(v.tags) if v.tags else None,
            "volumeType": v.type,
            "iops": v.iops if v.type != "gp2" else min(16000, max(100, 3 * v.size)),  # gp2's baseline, as AWS shows it
            "throughput": v.throughput,
            "encrypted": v.encrypted,
            "kmsKeyId": v.kms_key_id,
            "multiAttachEnabled": False,
        }

    def snapshot_xml(self, snap: Snapshot) -> dict[str, Any]:
        if snap.state == "completed":
            progress = 100
        else:
            span = max(snap.due - snap.start_time, 1e-6)
            progress = min(99, int(100 * (time.time() - snap.start_time) / span))
        return {
            "snapshotId": snap.id,
            "volumeId": snap.volume_id,
            "status": snap.state,
            "startTime": iso(snap.start_time),
            "progress": f"{progress}%",
            **({"statusMessage": "Snapshot failed (ec2lab fault fail-snapshots)"} if snap.state == "error" else {}),
            "ownerId": ACCOUNT_ID,
            "volumeSize": snap.volume_size,
            "description": snap.description,
            "encrypted": snap.encrypted,
            "kmsKeyId": snap.kms_key_id,
            "storageTier": "standard",
            "tagSet": _tag_list(snap.tags) if snap.tags else None,
        }

    def modification_xml(self, m: Modification) -> dict[str, Any]:
        progress = {"modifying": 10, "optimizing": 50, "completed": 100}[m.state]
        return {
            "volumeId": m.volume_id,
            "modificationState": m.state,
            "targetSize": m.target["size"],
            "targetIops": m.target["iops"],
            "targetVolumeType": m.target["type"],
            "targetThroughput": m.target["throughput"],
            "originalSize": m.original["size"],
            "originalIops": m.original["iops"],
            "originalVolumeType": m.original["type"],
            "originalThroughput": m.original["throughput"],
            "progress": progress,
            "startTime": iso(m.start_time),
            "endTime": iso(m.end_time) if m.end_time else None,
        }

    # --- volumes ----------------------------------------------------------------------------------------------------
    def do_CreateVolume(self, p: Params) -> dict[str, Any]:
        az = p.str("AvailabilityZone")
        token = p.str("ClientToken")
        earlier = next((v for v in self.s.volumes.values() if token and v.client_token == token), None)
        if earlier is not None:  # a retried request: the volume it made, as AWS answers
            if (az, p.int("Size") or earlier.size) != (earlier.az, earlier.size):
                raise Ec2Error("IdempotentParameterMismatch", f"The client token {token} was used with other parameters")
            return self.volume_xml(earlier)
        if not az:
            raise Ec2Error("MissingParameter", "The request must contain the parameter AvailabilityZone")
        if az not in self.zones():
            raise Ec2Error("InvalidParameterValue", f"Invalid availability zone: [{az}]")
        vtype = p.str("VolumeType") or "gp2"
        size, snapshot_id = p.int("Size"), p.str("SnapshotId")
        encrypted, kms_key_id = bool(p.bool("Encrypted")), p.str("KmsKeyId")
        if kms_key_id and not encrypted:
            raise Ec2Error("InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted to be set.")
        source = None
        if snapshot_id:
            source = self.snapshot(snapshot_id)
            if source.state != "completed":
                raise Ec2Error("IncorrectState", f"Snapshot is in invalid state - {source.state}")
            if size is None:
                size = source.volume_size
            elif size < source.volume_size:
                raise Ec2Error(
                    "InvalidParameterValue",
                    f"Volume of {size}GiB is smaller than snapshot '{snapshot_id}', expect size >= {source.volume_size}GiB",
                )
            if source.encrypted:  # a volume from an encrypted snapshot is encrypted, whatever was asked
                encrypted, kms_key_id = True, kms_key_id or source.kms_key_id
        if size is None:
            raise Ec2Error("MissingParameter", "The request must contain the parameter size or snapshotId")
        iops, throughput = check_volume(vtype, size, p.int("Iops"), p.int("Throughput"))
        tags = p.tag_specifications("volume")
        if encrypted and not kms_key_id:
            kms_key_id = f"arn:aws:kms:{self.settings.region}:{ACCOUNT_ID}:key/ec2lab-default-aws-ebs"
        now = time.time()
        vol = Volume(
            id=new_id("vol"),
            size=size,
            az=az,
            type=vtype,
            iops=iops,
            throughput=throughput,
            encrypted=encrypted,
            kms_key_id=kms_key_id,
            snapshot_id=snapshot_id,
            state="creating",
            create_time=now,
            due=now + self.settings.delays["create"],
            tags=tags,
            client_token=token,
        )
        dataplane.create_file(self.store.volume_file(vol.id), size, self.store.snapshot_file(snapshot_id) if source else None)
        self.s.volumes[vol.id] = vol
        return self.volume_xml(vol)

    def do_DescribeVolumes(self, p: Params) -> dict[str, Any]:
        ids = p.list("VolumeId")
        if ids and p.int("MaxResults") is not None:
            raise Ec2Error("InvalidParameterCombination", "The parameter volumeSet cannot be used with the parameter maxResults")
        vols = [self.volume(i) for i in ids] if ids else list(self.s.volumes.values())
        fields = {
            "volume-id": lambda v: [v.id],
            "status": lambda v: [v.state],
            "availability-zone": lambda v: [v.az],
            "volume-type": lambda v: [v.type],
            "size": lambda v: [v.size],
            "snapshot-id": lambda v: [v.snapshot_id or ""],
            "encrypted": lambda v: [str(v.encrypted).lower()],
            "attachment.instance-id": lambda v: [v.attachment.instance_id] if v.attachment else [],
            "attachment.device": lambda v: [v.attachment.device] if v.attachment else [],
            "attachment.status": lambda v: [v.attachment.state] if v.attachment else [],
        }
        chosen = [v for v in vols if matches(p.filters(), fields, lambda v: v.tags, v)]
        items, token = page(chosen, p, "MaxResults", "NextToken")
        return {"volumeSet": [self.volume_xml(v) for v in items], "nextToken": token}

    def do_DeleteVolume(self, p: Params) -> dict[str, Any]:
        vol = self.volume(p.req("VolumeId"))
        if vol.attachment:
            raise Ec2Error("VolumeInUse", f"Volume {vol.id} is currently attached to {vol.attachment.instance_id}")
        self.store.volume_file(vol.id).unlink(missing_ok=True)
        del self.s.volumes[vol.id]
        self.s.modifications.pop(vol.id, None)
        return {"return": True}

    def do_AttachVolume(self, p: Params) -> dict[str, Any]:
        device, instance_id = p.req("Device"), p.req("InstanceId")
        vol, inst = self.volume(p.req("VolumeId")), self.instance(instance_id)
        if vol.attachment:
            raise Ec2Error("VolumeInUse", f"{vol.id} is already attached to an instance")
        if vol.state != "available":
            raise Ec2Error("IncorrectState", f"{vol.id} is not 'available'.")
        if not DEVICE_NAME.fullmatch(device):
            raise Ec2Error(
                "InvalidParameterValue",
                f"Value ({device}) for parameter device is invalid. {device} is not a valid EBS device name.",
            )
        for other in self.s.volumes.values():
            if other.attachment and other.attachment.instance_id == instance_id and other.attachment.device == device:
                raise Ec2Error(
                    "InvalidParameterValue",
                    f"Invalid value '{device}' for unixDevice. Attachment point {device} is already in use",
                )
        if vol.az != inst.az:
            raise Ec2Error(
                "InvalidVolume.ZoneMismatch",
                f"The volume '{vol.id}' is not in the same availability zone as instance '{instance_id}'",
            )
        link = dataplane.link_path(self.settings.dev_root, inst.platform, vol.id, device)
        if (link.exists() or link.is_symlink()) and str(link) not in self.s.links:
            # not AWS's: the emulator's guard against ever replacing a real device node or link
            raise Ec2Error("InvalidParameterValue", f"ec2lab: {link} exists and is not the emulator's; choose another device")
        now = time.time()
        vol.attachment = Attachment(instance_id, device, "attaching", now, now + self.settings.delays["attach"])
        vol.state = "in-use"
        return _attachment_xml(vol.id, vol.attachment)

    def do_DetachVolume(self, p: Params) -> dict[str, Any]:
        vol = self.volume(p.req("VolumeId"))
        instance_id, device, force = p.str("InstanceId"), p.str("Device"), bool(p.bool("Force"))
        if instance_id:
            self.instance(instance_id)
        a = vol.attachment
        if a is None:
            raise Ec2Error("IncorrectState", f"Volume '{vol.id}' is in the '{vol.state}' state.")
        if (instance_id and instance_id != a.instance_id) or (device and device != a.device):
            raise Ec2Error(
                "InvalidAttachment.NotFound",
                f"Attachment point {device or a.device} for volume {vol.id} "
                f"on instance {instance_id or a.instance_id} does not exist",
            )
        if a.state != "detaching":
            a.state, a.due = "detaching", time.time() + self.settings.delays["detach"]
        a.force = a.force or force
        return _attachment_xml(vol.id, a)

    def do_ModifyVolume(self, p: Params) -> dict[str, Any]:
        vol = self.volume(p.req("VolumeId"))
        current = self.s.modifications.get(vol.id)
        if current and current.state != "completed":
            raise Ec2Error("IncorrectModificationState", f"Volume {vol.id} is already being modified ({current.state}).")
        if vol.state not in ("available", "in-use"):
            raise Ec2Error("IncorrectState", f"Volume '{vol.id}' is in the '{vol.state}' state.")
        size = p.int("Size") or vol.size
        vtype = p.str("VolumeType") or vol.type
        if size < vol.size:
            raise Ec2Error("InvalidParameterValue", f"New size cannot be smaller than existing size of {vol.size}GiB.")
        # like AWS: unchanged settings carry over when the new type takes them, else the new type's defaults apply
        carry_iops = vtype == vol.type or {vtype, vol.type} <= {"io1", "io2"}
        iops = p.int("Iops")
        iops = iops if iops is not None else (vol.iops if carry_iops else None)
        throughput = p.int("Throughput")
        throughput = throughput if throughput is not None else (vol.throughput if vtype == vol.type else None)
        iops, throughput = check_volume(vtype, size, iops, throughput)
        original = {"size": vol.size, "type": vol.type, "iops": vol.iops, "throughput": vol.throughput}
        target = {"size": size, "type": vtype, "iops": iops, "throughput": throughput}
        if original == target:
            raise Ec2Error("InvalidParameterValue", "New size, type, IOPS and throughput are the same as the existing volume's.")
        now = time.time()
        mod = Modification(vol.id, "modifying", original, target, now, now + self.settings.delays["modify"])
        self.s.modifications[vol.id] = mod
        return {"volumeModification": self.modification_xml(mod)}

    def do_DescribeVolumesModifications(self, p: Params) -> dict[str, Any]:
        ids = p.list("VolumeId")
        for vid in ids:
            self.volume(vid)
            if vid not in self.s.modifications:
                raise Ec2Error("InvalidVolumeModification.NotFound", f"Modification for volume '{vid}' does not exist.")
        mods = [self.s.modifications[i] for i in ids] if ids else list(self.s.modifications.values())
        fields = {"volume-id": lambda m: [m.volume_id], "modification-state": lambda m: [m.state]}
        chosen = [m for m in mods if matches(p.filters(), fields, lambda m: {}, m)]
        items, token = page(chosen, p)
        return {"volumeModificationSet": [self.modification_xml(m) for m in items], "nextToken": token}

    # --- snapshots -------------------------------------------------------------------------------------------------
    def do_CreateSnapshot(self, p: Params) -> dict[str, Any]:
        vol = self.volume(p.req("VolumeId"))
        if vol.state == "creating":
            raise Ec2Error("IncorrectState", f"Volume '{vol.id}' is in the 'creating' state.")
        tags = p.tag_specifications("snapshot")
        now = time.time()
        snap = Snapshot(
            id=new_id("snap"),
            volume_id=vol.id,
            volume_size=vol.size,
            state="pending",
            start_time=now,
            due=now + self.settings.delays["snapshot"],
            description=p.str("Description") or "",
            encrypted=vol.encrypted,
            kms_key_id=vol.kms_key_id,
            tags=tags,
        )
        # the bytes are taken now (a point-in-time copy); only the state waits, as EBS's does
        dataplane.copy_file(self.store.volume_file(vol.id), self.store.snapshot_file(snap.id))
        self.s.snapshots[snap.id] = snap
        return self.snapshot_xml(snap)

    def do_DescribeSnapshots(self, p: Params) -> dict[str, Any]:
        ids = p.list("SnapshotId")
        owners = p.list("Owner")
        snaps = [self.snapshot(i) for i in ids] if ids else list(self.s.snapshots.values())
        if owners and not {"self", ACCOUNT_ID} & set(owners):
            snaps = []
        fields = {
            "snapshot-id": lambda s: [s.id],
            "volume-id": lambda s: [s.volume_id],
            "status": lambda s: [s.state],
            "owner-id": lambda s: [ACCOUNT_ID],
            "description": lambda s: [s.description],
            "encrypted": lambda s: [str(s.encrypted).lower()],
        }
        chosen = [s for s in snaps if matches(p.filters(), fields, lambda s: s.tags, s)]
        items, token = page(chosen, p)
        return {"snapshotSet": [self.snapshot_xml(s) for s in items], "nextToken": token}

    def do_DeleteSnapshot(self, p: Params) -> dict[str, Any]:
        snap = self.snapshot(p.req("SnapshotId"))
        self.store.snapshot_file(snap.id).unlink(missing_ok=True)
        del self.s.snapshots[snap.id]
        return {"return": True}

    # --- tags ------------------------------------------------------------------------------------------------------
    def _taggable(self, resource_id: str) -> dict[str, str]:
        if resource_id.startswith("vol-"):
            return self.volume(resource_id).tags
        if resource_id.startswith("snap-"):
            return self.snapshot(resource_id).tags
        raise Ec2Error("InvalidID", f"The ID '{resource_id}' is not valid")

    def do_CreateTags(self, p: Params) -> dict[str, Any]:
        resources = [self._taggable(r) for r in p.list("ResourceId")]
        for tags in resources:
            tags.update({key: value or "" for key, value in p.tags()})
        return {"return": True}

    def do_DeleteTags(self, p: Params) -> dict[str, Any]:
        wanted = p.tags()
        for tags in [self._taggable(r) for r in p.list("ResourceId")]:
            if not wanted:
                tags.clear()
            for key, value in wanted:
                if key in tags and (value is None or tags[key] == value):
                    del tags[key]
        return {"return": True}

    # --- instances and zones ---------------------------------------------------------------------------------------
    def instance_xml(self, inst: Instance) -> dict[str, Any]:
        mappings = [
            {
                "deviceName": v.attachment.device,
                "ebs": {
                    "volumeId": v.id,
                    "status": v.attachment.state,
                    "attachTime": iso(v.attachment.attach_time),
                    "deleteOnTermination": False,
                },
            }
            for v in self.s.volumes.values()
            if v.attachment and v.attachment.instance_id == inst.id
        ]
        return {
            "instanceId": inst.id,
            "imageId": "ami-0ec2lab00000000000",
            "instanceState": {"code": INSTANCE_STATE_CODES[inst.state], "name": inst.state},
            "instanceType": "m5.large" if inst.platform == "nitro" else "m4.large",
            "placement": {"availabilityZone": inst.az, "tenancy": "default"},
            "rootDeviceType": "ebs",
            "rootDeviceName": "/dev/xvda",
            "blockDeviceMapping": mappings,
        }

    def do_DescribeInstances(self, p: Params) -> dict[str, Any]:
        ids = p.list("InstanceId")
        insts = [self.instance(i) for i in ids] if ids else list(self.s.instances.values())
        fields = {
            "instance-id": lambda i: [i.id],
            "instance-state-name": lambda i: [i.state],
            "availability-zone": lambda i: [i.az],
            "block-device-mapping.volume-id": lambda i: [
                v.id for v in self.s.volumes.values() if v.attachment and v.attachment.instance_id == i.id
            ],
        }
        chosen = [i for i in insts if matches(p.filters(), fields, lambda i: {}, i)]
        items, token = page(chosen, p)
        reservations = [
            {"reservationId": "r-" + i.id[2:], "ownerId": ACCOUNT_ID, "instancesSet": [self.instance_xml(i)]} for i in items
        ]
        return {"reservationSet": reservations, "nextToken": token}

    def do_DescribeAvailabilityZones(self, p: Params) -> dict[str, Any]:
        names = p.list("ZoneName") or self.zones()
        for name in names:
            if name not in self.zones():
                raise Ec2Error("InvalidParameterValue", f"The zone '{name}' does not exist.")
        zones = [
            {
                "zoneName": z,
                "zoneState": "available",
                "regionName": self.settings.region,
                "zoneId": f"{self.settings.region[:2]}{self.settings.region.split('-')[1][0]}1-az{ord(z[-1]) - 96}",
                "zoneType": "availability-zone",
            }
            for z in names
        ]
        return {"availabilityZoneInfo": zones}
