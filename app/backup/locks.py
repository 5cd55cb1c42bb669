"""Store locks with expiry, kept in the store itself.

Backups take a *shared* lock; delete and garbage collection take an
*exclusive* one. A lock is an object `convoy-store/locks/<id>.json` holding
its kind, owner and expiry time, renewed by a background thread every third
of its lifetime, so the lock of a killed process expires by itself.

Acquiring is "write mine, then look at the others" (as restic does): of two
processes that race, at least one sees the other's lock and backs off, so an
exclusive lock never coexists with any other live lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from app.errors import Conflict, Damaged, NotFound, Unavailable
from app.validation import parse_json

from . import layout, limits
from .objectstore import ObjectStore
from .schemas import LockDoc

log = logging.getLogger(__name__)

DEFAULT_TTL = 120.0  # seconds a lock lives without renewal


@dataclass
class LockInfo:
    id: str
    kind: str  # "shared" or "exclusive"
    operation: str
    host: str
    pid: int
    expires_at: float
    key: str = ""  # where it was read: a copied lock file carries another lock's id

    def describe(self) -> str:
        left = int(self.expires_at - time.time())
        return f"{self.operation} by pid {self.pid} on {self.host} (lock expires in {left}s unless renewed)"


def read_locks(store: ObjectStore) -> list[LockInfo]:
    """Every lock in the store, live or expired.

    A lock that is gone by the time it is read is no lock; one that is not a
    lock record is skipped with a warning (it cannot say what holds it or
    until when). A store that cannot be read fails the caller.
    """
    locks = []
    for key in store.list(layout.LOCKS):
        try:
            data = store.get_at_most(key, limits.MAX_SMALL_DOC, "lock")
            what = f"lock {key} in {store.url}"
            raw: LockDoc = parse_json(LockDoc, bytes(data), what=what, max_bytes=limits.MAX_SMALL_DOC, error=Damaged)
        except NotFound:
            continue
        except Damaged as e:
            log.warning("%s; ignoring it", e)
            continue
        locks.append(
            LockInfo(
                id=raw["id"],
                kind=raw["kind"],
                operation=raw["operation"],
                host=raw["host"],
                pid=raw["pid"],
                expires_at=raw["expires_at"],
                key=key,
            )
        )
    return locks


class StoreLock:
    """Hold with `with StoreLock(store, "shared", "backup of vol"):`."""

    def __init__(self, store: ObjectStore, kind: str, operation: str, ttl: float = DEFAULT_TTL, optional: bool = False):
        """`optional`: for readers (restore, verify) of a store they cannot write
        (a read-only mount, read-only S3 credentials): go on without a lock.
        Nobody who cannot write can collect garbage there either."""
        if kind not in ("shared", "exclusive") or (optional and kind != "shared"):
            raise ValueError(f"a store lock is shared or exclusive, and only a shared one is optional, not {kind!r}")
        self.optional = optional
        self.held = False
        self.store = store
        self.info = LockInfo(
            id=secrets.token_hex(8),
            kind=kind,
            operation=operation,
            host=socket.gethostname(),
            pid=os.getpid(),
            expires_at=0.0,
        )
        self.ttl = ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_renewal = 0.0
        self._renew_error: Exception | None = None

    @property
    def key(self) -> str:
        return layout.lock_key(self.info.id)

    def _write(self) -> None:
        now = time.time()
        self.info.expires_at = now + self.ttl
        self.store.put(self.key, json.dumps(self.info.__dict__).encode())
        self._last_renewal = now

    def acquire(self) -> StoreLock:
        try:
            self._write()
        except Unavailable:
            if not self.optional:
                raise
            log.warning("cannot write a lock in %s; reading it without one", self.store.url)
            return self
        self.held = True
        now = time.time()
        blockers = [
            other
            for other in read_locks(self.store)
            if other.key != self.key
            and other.expires_at > now
            and (self.info.kind == "exclusive" or other.kind == "exclusive")
        ]
        if blockers:
            self.store.delete(self.key)
            raise Conflict(
                f"the backup store {self.store.url} is busy: "
                + "; ".join(b.describe() for b in blockers)
                + ". Retry when it has finished"
            )
        self._thread = threading.Thread(target=self._renew_loop, name="store-lock", daemon=True)
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._write()
            except Exception as e:  # noqa: BLE001 - checked by still_held()
                self._renew_error = e

    def check_held(self) -> None:
        """Raise when the lock may have expired (renewals failed); call before committing."""
        if time.time() - self._last_renewal > self.ttl * 0.9:
            raise Unavailable(
                f"lost the lock on {self.store.url} (could not renew it: {self._renew_error}); "
                "nothing was committed, retry the operation"
            )

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        self._stop.set()
        if self._thread:
            self._thread.join()
        with contextlib.suppress(Exception):  # it will expire
            self.store.delete(self.key)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_expired_locks(store: ObjectStore) -> int:
    now = time.time()
    n = 0
    for lock in read_locks(store):
        if lock.expires_at < now:
            store.delete(lock.key)  # the object read, not the one its id names
            n += 1
    return n
