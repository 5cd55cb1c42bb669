"""The ticker: moves volumes, attachments, snapshots and modifications to their next state when their time comes.

Attach and detach do the data plane here (loop device + link), so a device appears only once the API says
`attached`, and goes before the volume is `available` again, as on a real instance.
"""

from __future__ import annotations

import logging
import subprocess
import time

from tests.ec2lab import dataplane
from tests.ec2lab.config import Faults, Settings
from tests.ec2lab.model import Store, Volume

log = logging.getLogger("ec2lab")


class Transitions:
    def __init__(self, store: Store, settings: Settings, faults: Faults):
        self.store, self.settings, self.faults = store, settings, faults
        self._reported: set[str] = set()  # attach failures already logged, to log each once

    def tick(self) -> None:
        with self.store.lock:
            now = time.time()
            changed = False
            for vol in list(self.store.state.volumes.values()):
                changed |= self._volume(vol, now)
            for snap in self.store.state.snapshots.values():
                if snap.state == "pending" and now >= snap.due:
                    snap.state, changed = ("error" if self.faults.fail_snapshots else "completed"), True
            for mod in self.store.state.modifications.values():
                if mod.state != "completed" and now >= mod.due:
                    self._modification_step(mod, now)
                    changed = True
            if changed:
                self.store.save()

    def _volume(self, vol: Volume, now: float) -> bool:
        a = vol.attachment
        if vol.state == "creating" and now >= vol.due:
            vol.state = "available"
            return True
        if a is None or now < a.due:
            return False
        if a.state == "attaching" and not self.faults.attach_stuck(vol.id):
            return self._attach(vol)
        if a.state == "detaching":
            if a.loop and dataplane.busy(a.loop) and not a.force:
                return False  # like a real instance: the device stays until it is unmounted (or forced)
            dataplane.detach(a.loop, a.link, self.store.state.links)
            vol.attachment, vol.state = None, "available"
            return True
        return False

    def _attach(self, vol: Volume) -> bool:
        a = vol.attachment
        assert a is not None
        inst = self.store.state.instances[a.instance_id]
        link = dataplane.link_path(self.settings.dev_root, inst.platform, vol.id, a.device)
        try:
            a.loop = dataplane.attach(self.store.volume_file(vol.id), link, self.store.state.links)
        except (dataplane.LinkRefused, OSError, subprocess.SubprocessError) as e:
            if vol.id not in self._reported:
                self._reported.add(vol.id)
                log.error("attach of %s stays 'attaching': %s", vol.id, e)
            return False
        a.link, a.state = str(link), "attached"
        log.info("attached %s to %s as %s -> %s", vol.id, a.instance_id, link, a.loop)
        return True

    def _modification_step(self, mod, now: float) -> None:
        vol = self.store.state.volumes.get(mod.volume_id)
        if mod.state == "modifying":
            # EBS: the new size is usable once the modification is `optimizing`
            if vol is not None:
                t = mod.target
                vol.size, vol.type, vol.iops, vol.throughput = t["size"], t["type"], t["iops"], t["throughput"]
                dataplane.grow_file(self.store.volume_file(vol.id), vol.size)
                if vol.attachment and vol.attachment.loop and vol.attachment.state == "attached":
                    dataplane.refresh_size(vol.attachment.loop)
            mod.state, mod.due = "optimizing", now + self.settings.delays["modify"]
        else:
            mod.state, mod.end_time = "completed", now

    def recover(self) -> None:
        """After a restart: an attached volume whose loop device is gone (or backs another file now) gets a new one."""
        with self.store.lock:
            for vol in self.store.state.volumes.values():
                a = vol.attachment
                if a and a.loop and dataplane.backing_file(a.loop) != str(self.store.volume_file(vol.id).resolve()):
                    a.loop = None  # its link is still ours (recorded), so a new attach replaces it
                    if a.state == "attached":
                        self._attach(vol)
            self.store.save()
