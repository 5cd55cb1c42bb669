"""The back-ends the driver suite runs against, and what each keeps where.

A new back-end joins the suite by adding a `Backend` here: how to start a
daemon on it, whether a volume's storage exists (so a test can check that a
delete removed or kept it), how to plant storage that exists before convoy
(so a test can check adoption), which devices it holds attached, and what a
reboot takes away.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.daemon_harness import wait_until


@dataclass(frozen=True)
class Backend:
    id: str
    driver: str
    #: driver options, given the test's scratch directory (an XFS one where reflinks matter)
    options: dict[str, str] = field(default_factory=dict)
    on_xfs: bool = False
    #: what its snapshots are: "tree" or "block"
    snapshots: str = "tree"
    #: the fixture of the cloud emulator its volumes live in (tests/ec2lab, tests/dolab); "" for local storage
    lab: str = ""
    #: a backup after the first reads only what changed (reflinks, EBS's changed-block list)
    reads_only_changes: bool = True

    @property
    def cloud(self) -> bool:
        return bool(self.lab)


BACKENDS = [
    Backend("vfs", "vfs", {"vfs.path": "{storage}/vfs"}),
    Backend("image-xfs", "image", {"image.path": "{storage}/images"}, on_xfs=True, snapshots="block"),
    Backend("image-copy", "image", {"image.path": "{storage}/images"}, snapshots="block", reads_only_changes=False),
    Backend("ebs", "ebs", snapshots="block", lab="ec2lab"),
    # DigitalOcean lists no changed blocks: each image backup reads the whole snapshot (and stores only what changed)
    Backend("digitalocean", "digitalocean", snapshots="block", lab="dolab", reads_only_changes=False),
]

# A dm-thin pool on two sparse files of the test's storage (the driver attaches them to loop devices); only
# where the kernel has device-mapper: inside the guest of tests/guest (tests/guest/inside/test_devicemapper_suite.py).
# 64 KiB pool blocks for the suite's small volumes. Its incremental backup reads only thin_delta's changes, but
# on a just-made ext4 they are scattered (lazy inode-table zeroing, the journal) and each one costs a 1 MiB backup
# block: not always under half of a 128 MiB volume's few mapped MiB, so the suite does not count them;
# tests/guest/inside/test_devicemapper.py counts them exactly, on chunks written straight to the device
DEVICEMAPPER = Backend(
    "devicemapper",
    "devicemapper",
    {"dm.datadev": "{storage}/dm-data.img", "dm.metadatadev": "{storage}/dm-metadata.img", "dm.thinpoolblocksize": "128"},
    snapshots="block",
    reads_only_changes=False,
)
if os.path.exists("/dev/mapper/control"):
    BACKENDS.append(DEVICEMAPPER)


class Host:
    """A daemon on one back-end, and what a test asks of that back-end's storage."""

    def __init__(self, backend: Backend, daemon: Any, storage: Path, lab: Any = None):
        self.backend = backend
        self.daemon = daemon
        self.storage = storage
        self.lab = lab  # the EC2 emulator of a cloud back-end

    def prepare(self) -> None:
        """Storage the back-end needs before its daemon starts: a dm pool's two sparse files."""
        if self.backend.driver == "devicemapper":
            from tests.drivers import dm_host

            dm_host.make_pool_files(self.storage)

    def cleanup(self) -> None:
        """After the test (the daemon stopped): what it leaves in the kernel by design goes."""
        if self.backend.driver == "devicemapper":
            from tests.drivers import dm_host

            dm_host.remove_pool(self.pool_name)
            for device in loop_devices_of(self.storage):  # the pool's two
                subprocess.run(["losetup", "-d", device], check=False)

    @property
    def pool_name(self) -> str:
        """A pool name of its own per test (dm names are global to the kernel)."""
        import hashlib

        return "convoy-suite-" + hashlib.sha256(str(self.storage).encode()).hexdigest()[:10]

    def daemon_args(self) -> list[str]:
        args = ["--drivers", self.backend.driver]
        options = {key: value.format(storage=self.storage) for key, value in self.backend.options.items()}
        if self.backend.driver == "devicemapper":
            options["dm.thinpoolname"] = self.pool_name
        if self.backend.lab == "ec2lab":
            options |= {"ebs.endpoint": self.lab.endpoint, "ebs.dev_root": str(self.lab.dev_root)}
        if self.backend.lab == "dolab":
            options |= {"do.api_endpoint": self.lab.endpoint, "do.dev_root": str(self.lab.dev_root)}
        for key, value in options.items():
            args += ["--driver-opts", f"{key}={value}"]
        return args

    def daemon_env(self) -> dict[str, str]:
        """What tells the daemon which instance or droplet it is (the first of its emulator), and its credentials."""
        if self.backend.lab == "ec2lab":
            from tests.ec2lab.fixture import INSTANCE_A

            return {
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.lab.imds_endpoint(INSTANCE_A),
                "AWS_ACCESS_KEY_ID": "ec2lab",
                "AWS_SECRET_ACCESS_KEY": "ec2lab",
            }
        if self.backend.lab == "dolab":
            from tests.dolab.fixture import DROPLET_A

            return {"DO_METADATA_ENDPOINT": self.lab.metadata_endpoint(DROPLET_A), "DO_TOKEN": self.lab.token}
        return {}

    def storage_exists(self, name: str) -> bool:
        """Whether the volume's data is still there (a directory, an image file, an EBS or DO volume)."""
        if self.backend.lab == "dolab":
            return bool(self._do_volumes(name))
        if self.lab is not None:
            return bool(self._ebs_volumes(name))
        if self.backend.driver == "vfs":
            return (self.storage / "vfs" / name).exists()
        if self.backend.driver == "devicemapper":
            from tests.drivers import dm_host

            return dm_host.volume_device(self.daemon.root, self.pool_name, name) is not None
        return (self.storage / "images" / f"{name}.img").exists()

    def plant(self, name: str, files: dict[str, bytes]) -> None:
        """Storage of a volume made before convoy knew it, holding `files`."""
        if self.backend.driver == "vfs":
            where = self.storage / "vfs" / name
            where.mkdir(parents=True)
            for rel, data in files.items():
                (where / rel).write_bytes(data)
            return
        if self.backend.lab == "dolab":
            self._plant_do(name, files)
            return
        if self.lab is not None:
            self._plant_ebs(name, files)
            return
        if self.backend.driver == "devicemapper":
            from tests.drivers import dm_host

            dm_host.plant(self.daemon, self.pool_name, name, lambda device: _fill(Path(device), files))
            return
        image = self.storage / "images" / f"{name}.img"
        image.parent.mkdir(parents=True, exist_ok=True)
        with open(image, "wb") as f:
            f.truncate(64 << 20)
        _fill(image, files)

    def attached_devices(self) -> dict[str, str]:
        """Loop devices holding this back-end's volumes (its images, or the emulator's volume files), or the
        active thin devices of a dm pool (its own two loop devices are the pool's, not a volume's)."""
        if self.backend.driver == "devicemapper":
            from tests.drivers import dm_host

            return dm_host.thin_devices(self.pool_name)
        return loop_devices_of(self.lab.state_dir if self.lab is not None else self.storage)

    def reboot(self, mountpoint: str) -> None:
        """What a reboot takes away: every mount; local loop devices too (an EBS attachment survives one)."""
        subprocess.run(["umount", mountpoint], check=True)
        if self.backend.driver == "devicemapper":
            from tests.drivers import dm_host

            dm_host.remove_pool(self.pool_name)
            for device in loop_devices_of(self.storage):  # the pool's two: the start attaches them again
                subprocess.run(["losetup", "-d", device], check=True)
            return
        if self.lab is None:
            for device in self.attached_devices():
                subprocess.run(["losetup", "-d", device], check=True)

    def _ebs_volumes(self, name: str) -> list[dict[str, Any]]:
        filters = [{"Name": "tag:convoy:volume", "Values": [name]}]
        volumes = self.lab.client().describe_volumes(Filters=filters)["Volumes"]
        return [v for v in volumes if v["State"] not in ("deleting", "deleted")]

    def _plant_ebs(self, name: str, files: dict[str, bytes]) -> None:
        """An EBS volume another tool made (tagged with the name), given a file system on the other instance."""
        from tests.ec2lab.fixture import INSTANCE_B

        client = self.lab.client()
        volume_id = client.create_volume(
            AvailabilityZone=f"{self.lab.region}a",
            Size=1,
            VolumeType="gp3",
            TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "convoy:volume", "Value": name}]}],
        )["VolumeId"]
        client.get_waiter("volume_available").wait(VolumeIds=[volume_id], WaiterConfig={"Delay": 1})
        client.attach_volume(VolumeId=volume_id, InstanceId=INSTANCE_B, Device="/dev/sdf")
        client.get_waiter("volume_in_use").wait(VolumeIds=[volume_id], WaiterConfig={"Delay": 1})
        link = self.lab.link_for(volume_id, INSTANCE_B)
        assert wait_until(link.exists, 30), f"{link} did not appear"
        _fill(Path(os.path.realpath(link)), files)
        client.detach_volume(VolumeId=volume_id, InstanceId=INSTANCE_B)
        client.get_waiter("volume_available").wait(VolumeIds=[volume_id], WaiterConfig={"Delay": 1})


    def _do_volumes(self, name: str) -> list[dict[str, Any]]:
        from app.storage.do_names import name_tag

        volumes = self.lab.api("GET", "/v2/volumes?per_page=200")[1]["volumes"]
        return [v for v in volumes if name_tag(name) in v.get("tags", [])]

    def _plant_do(self, name: str, files: dict[str, bytes]) -> None:
        """A DO volume made in the control panel under the Docker name, as dostorage users made theirs, given a
        file system on the other droplet."""
        from tests.dolab.fixture import DROPLET_B

        status, made = self.lab.api("POST", "/v2/volumes", {"name": name, "region": self.lab.region, "size_gigabytes": 1})
        assert status == 201, made
        volume_id = made["volume"]["id"]
        for kind in ("attach", "detach"):
            status, answer = self.lab.api(
                "POST", f"/v2/volumes/{volume_id}/actions", {"type": kind, "droplet_id": DROPLET_B, "region": self.lab.region}
            )
            assert status == 202, answer
            action = answer["action"]["id"]
            assert wait_until(lambda a=action: self.lab.api("GET", f"/v2/actions/{a}")[1]["action"]["status"] == "completed", 30)
            if kind == "attach":
                link = self.lab.link_for(name)
                assert wait_until(link.exists, 30), f"{link} did not appear"
                _fill(Path(os.path.realpath(link)), files)


def _fill(device: Path, files: dict[str, bytes]) -> None:
    """Make an ext4 on `device` (an image or a block device) holding `files`."""
    subprocess.run(["mkfs.ext4", "-q", "-F", str(device)], check=True)
    with tempfile.TemporaryDirectory() as mnt:
        subprocess.run(["mount", str(device), mnt], check=True)
        try:
            for rel, data in files.items():
                Path(mnt, rel).write_bytes(data)
        finally:
            subprocess.run(["umount", mnt], check=True)


def loop_devices_of(directory: Path) -> dict[str, str]:
    """Loop devices whose backing file is below `directory`: device -> file."""
    prefix = str(directory).rstrip("/") + "/"
    found = {}
    for name in os.listdir("/sys/block"):
        path = f"/sys/block/{name}/loop/backing_file"
        if name.startswith("loop") and os.path.exists(path):
            with open(path) as f:
                backing = f.read().strip()
            if backing.startswith(prefix):
                found[f"/dev/{name}"] = backing
    return found
