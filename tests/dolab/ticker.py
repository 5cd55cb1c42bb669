"""The ticker: completes volume actions when their time comes, doing the data plane as a droplet would see it.

attach: the volume's droplet_ids gets the droplet; on a droplet of this host a loop device and the by-id link appear.
detach: both go, then droplet_ids is emptied. A running droplet that still holds the device (mounted) keeps the
  action in-progress; after a grace period it errors and the volume stays attached, as a guest that refuses to release
  a busy disk. A powered-off droplet holds nothing: its detach completes (the loop device goes once unmounted).
resize: the file grows and, when attached here, the loop device's capacity follows (losetup -c).
While stick_actions is on, nothing completes.
"""

from __future__ import annotations

import logging
import subprocess
import time

from tests.dolab import dataplane
from tests.dolab.config import Faults, Settings
from tests.dolab.model import Action, Store, Volume

log = logging.getLogger("dolab")


class Ticker:
    def __init__(self, store: Store, settings: Settings, faults: Faults):
        self.store, self.settings, self.faults = store, settings, faults

    def tick(self) -> None:
        if self.faults.stick_actions:
            return
        with self.store.lock:
            now = time.time()
            changed = False
            for action in self.store.state.actions.values():
                if action.status == "in-progress" and now >= action.due:
                    changed |= self._step(action, now)
            if changed:
                self.store.save()

    def _step(self, action: Action, now: float) -> bool:
        vol = self.store.state.volumes.get(action.volume_id)
        if vol is None:
            return self._finish(action, now, "errored", "the volume is gone")
        try:
            if action.type == "attach_volume":
                return self._attach(action, vol, now)
            if action.type == "detach_volume":
                return self._detach(action, vol, now)
            return self._resize(action, vol, now)
        except (dataplane.LinkRefused, OSError, subprocess.SubprocessError) as e:
            log.error("action %d (%s of %s) errored: %s", action.id, action.type, vol.name, e)
            return self._finish(action, now, "errored", str(e))

    def _finish(self, action: Action, now: float, status: str = "completed", error: str = "") -> bool:
        action.status, action.completed_at, action.error = status, now, error
        return True

    def _attach(self, action: Action, vol: Volume, now: float) -> bool:
        droplet = self.store.droplet(action.droplet_id or 0)
        if droplet is not None and droplet.local:
            self._plug(vol)
        vol.droplet_ids = [action.droplet_id or 0]
        log.info("attached %s to droplet %s%s", vol.name, action.droplet_id, f" as {vol.link} -> {vol.loop}" if vol.loop else "")
        return self._finish(action, now)

    def _plug(self, vol: Volume) -> None:
        link = dataplane.link_path(self.settings.dev_root, vol.name)
        vol.loop = dataplane.attach(self.store.volume_file(vol.id), link, self.store.state.links)
        vol.link = str(link)

    def _detach(self, action: Action, vol: Volume, now: float) -> bool:
        droplet = self.store.droplet(action.droplet_id or 0)
        running = droplet is not None and droplet.status == "active"
        if vol.loop and running and dataplane.busy(vol.loop):
            action.busy_since = action.busy_since or now
            if now - action.busy_since < self.settings.delays["busy"]:
                return False
            return self._finish(action, now, "errored", f"droplet {action.droplet_id} still uses {vol.link}")
        dataplane.detach(vol.loop, vol.link, self.store.state.links)
        vol.loop = vol.link = None
        vol.droplet_ids = [d for d in vol.droplet_ids if d != action.droplet_id]
        log.info("detached %s from droplet %s", vol.name, action.droplet_id)
        return self._finish(action, now)

    def _resize(self, action: Action, vol: Volume, now: float) -> bool:
        vol.size = action.size or vol.size
        dataplane.grow_file(self.store.volume_file(vol.id), vol.size)
        if vol.loop:
            dataplane.refresh_size(vol.loop)
        log.info("resized %s to %d GiB", vol.name, vol.size)
        return self._finish(action, now)

    def recover(self) -> None:
        """After a restart: a volume attached to a droplet of this host whose loop device is gone (or now backs
        another file) gets a new one; its link is still recorded as ours, so the new attach replaces it."""
        with self.store.lock:
            for vol in self.store.state.volumes.values():
                droplet = self.store.droplet(vol.droplet_ids[0]) if vol.droplet_ids else None
                if droplet is None or not droplet.local:
                    continue
                if vol.loop and dataplane.backing_file(vol.loop) == str(self.store.volume_file(vol.id).resolve()):
                    continue
                try:
                    self._plug(vol)
                except (dataplane.LinkRefused, OSError, subprocess.SubprocessError) as e:
                    log.error("cannot restore the device of %s: %s", vol.name, e)
            self.store.save()
