"""Volumes other hosts recorded on shared storage, read off Docker's request path.

Reading them is slow where it matters (an NFS server, a cloud API), and
Docker calls List and Get often. So they are read at start, then every
`interval` seconds in the background; a Get of a name not seen yet reads
them again at most once per interval per name. List and Get answer from
what was read last and never wait on shared storage; a name not seen yet is
looked up alone (`StorageDriver.shared_volume`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from app.storage.driver import SharedVolume, StorageDriver

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0  # seconds


class SharedVolumeCache:
    def __init__(
        self,
        drivers: Callable[[], dict[str, StorageDriver]],
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._drivers = drivers  # the drivers that started: asked at each refresh
        self.interval = interval
        self._clock = clock
        self._volumes: dict[str, tuple[str, SharedVolume]] = {}  # name -> (driver, volume)
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()  # one reader of shared storage at a time
        self._misses: dict[str, float] = {}  # name -> when a miss last read shared storage
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Read once now, then keep reading in the background."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="shared-volumes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def refresh(self) -> None:
        with self._refresh_lock:
            found: dict[str, tuple[str, SharedVolume]] = {}
            for driver_name, driver in self._drivers().items():
                try:
                    volumes = driver.shared_volumes()
                except Exception:  # a driver's own errors are logged by it; List must go on
                    log.exception("could not read the shared volumes of driver %s", driver_name)
                    with self._lock:
                        volumes = [v for d, v in self._volumes.values() if d == driver_name]
                for volume in volumes:
                    found.setdefault(volume.name, (driver_name, volume))
            with self._lock:
                self._volumes = found

    def forget(self, name: str) -> None:
        """This host deleted the volume (and its record): stop listing it before the next read."""
        with self._lock:
            self._volumes.pop(name, None)

    def all(self) -> list[tuple[str, SharedVolume]]:
        """(driver, volume) pairs as last read; no I/O."""
        with self._lock:
            return list(self._volumes.values())

    def find(self, name: str) -> tuple[str, SharedVolume] | None:
        """The volume `name`, looked up on shared storage if it was not seen and not looked for lately."""
        with self._lock:
            hit = self._volumes.get(name)
            if hit is not None:
                return hit
            now = self._clock()
            last = self._misses.get(name)
            if last is not None and now - last < self.interval:
                return None
            self._misses[name] = now
            if len(self._misses) > 10_000:  # names Docker asked about once: forget the oldest
                for old in sorted(self._misses, key=self._misses.__getitem__)[:5_000]:
                    del self._misses[old]
        # that one name only: every create asks about a name not seen yet, and
        # reading every record each time made 1,000 creates take quadratic time
        for driver_name, driver in self._drivers().items():
            try:
                volume = driver.shared_volume(name)
            except Exception:  # a driver's own errors are logged by it; the create goes on
                log.exception("could not look up %s among the shared volumes of driver %s", name, driver_name)
                continue
            if volume is not None:
                with self._lock:
                    return self._volumes.setdefault(name, (driver_name, volume))
        return None
