"""Backups of snapshots and restores into new volumes, run as jobs.

Validation (URLs, names, options, whether the backup exists) happens before
a job starts, so a bad request fails at once; the slow work runs in the job.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from app import logs
from app.backup.progress import Progress
from app.backup.urls import BackupURL, parse_backup_url, parse_store_url
from app.errors import Conflict, ConvoyError, InvalidInput, NotFound, Unavailable, error_from
from app.fs import filesystems, image_tree
from app.jobs import Job, JobRunner
from app.json_types import JSONObject
from app.private_dirs import make_private
from app.service import RESTORE_REF, RESTORE_SCRATCH, VolumeService
from app.snapshot_service import SnapshotService
from app.storage.driver import SnapshotKind, StorageDriver
from app.units import format_size

log = logging.getLogger(__name__)
T = TypeVar("T")

DOCKER_CREATE_LIMIT = 120.0  # seconds Docker waits for a volume create before it gives up
CLEAN_UP_MARGIN = 3.0  # seconds kept back for the answer to reach Docker


@dataclass(frozen=True)
class _RestoreRequest:
    """A restore request checked without the store: what to create, from where."""

    name: str
    url: str
    parsed: BackupURL
    driver: str
    size: int | None
    options: dict[str, str]
    endpoint: str | None


class BackupService:
    def __init__(self, volumes: VolumeService, snapshots: SnapshotService, jobs: JobRunner):
        self.volumes = volumes
        self.snapshots = snapshots
        self.jobs = jobs
        self.default_s3_endpoint = volumes.settings.s3_endpoint
        # volume -> (url, job, started by Docker): Docker's retries join only Docker's own restores
        self._restores: dict[str, tuple[str, Job, bool]] = {}
        self._restores_lock = threading.Lock()

    def _endpoint(self, s3_endpoint: str | None) -> str | None:
        return s3_endpoint or self.default_s3_endpoint

    # backups

    def _native(self, url: str) -> tuple[str, StorageDriver] | None:
        """The enabled back-end whose own snapshots are backups of this URL's scheme (ebs://), if any."""
        scheme = url.partition("://")[0] if "://" in url else ""
        for name, driver in self.volumes.drivers.items():
            if driver.native_backup_scheme and driver.native_backup_scheme == scheme:
                return name, self.volumes.driver(name)
        return None

    def _keep_as_backup(self, snapshot: str) -> JSONObject:
        with self.snapshots.held(snapshot) as (record, volume, driver):  # completed, and not deleted meanwhile
            return {"url": driver.keep_as_backup(record.ref(volume))}

    def create(self, snapshot: str, dest: str, s3_endpoint: str | None = None, name: str | None = None) -> Job:
        """Back up a snapshot: a tree backup of a directory snapshot, an image backup of a block one,
        or, to a back-end's own scheme (ebs://), the snapshot itself kept as the backup."""
        native = self._native(dest)
        record = self.snapshots.require(snapshot)
        volume = self.volumes.require(record.volume)
        logs.bind_volume(volume.name)  # the request named only the snapshot; the job's log lines name the volume
        if native is not None:
            driver_name = native[0]
            if volume.driver != driver_name:
                raise InvalidInput(
                    f"{dest} keeps {driver_name} snapshots as backups; snapshot {snapshot} is of a {volume.driver} "
                    "volume: back it up to vfs:// or s3:// instead"
                )
            return self.jobs.submit(
                "backup", f"backup of snapshot {snapshot} as {dest}", lambda progress: self._keep_as_backup(snapshot)
            )
        parse_store_url(dest)
        endpoint = self._endpoint(s3_endpoint)
        kind = self.volumes.driver(volume.driver).capabilities.snapshots
        make = self._image_backup if kind is SnapshotKind.BLOCK else self._tree_backup
        return self.jobs.submit(
            "backup",
            f"backup of snapshot {snapshot} to {dest}",
            lambda progress: make(snapshot, dest, endpoint, name, progress),
        )

    def _tree_backup(self, snapshot: str, dest: str, endpoint: str | None, name: str | None, progress: Progress) -> JSONObject:
        from app.backup import engine
        from app.backup.backup import SnapshotSource

        with ExitStack() as held:
            snap, directory = held.enter_context(self.snapshots.reading_tree(snapshot))
            volume = self.volumes.require(snap.volume)

            def find_snapshot(previous: str) -> SnapshotSource | None:
                """The last backup's snapshot, held open like this one, when it is still here.

                Its reflinked files let the engine read only the ranges that changed.
                """
                try:
                    record, path = held.enter_context(self.snapshots.reading_tree(previous, volume=snap.volume))
                except ConvoyError:
                    return None  # deleted since, or of another volume
                return SnapshotSource(record.name, str(path), record.created_at)

            return engine.create_backup(
                dest,
                snap.volume,
                SnapshotSource(snap.name, str(directory), snap.created_at),
                s3_endpoint=endpoint,
                backup_name=name,
                find_snapshot=find_snapshot,
                volume_size=volume.size,
                driver=volume.driver,
                progress=progress,
            )

    def _image_backup(self, snapshot: str, dest: str, endpoint: str | None, name: str | None, progress: Progress) -> JSONObject:
        """Read the snapshot block by block; only the ranges changed since the last backup's snapshot when known."""
        from app.backup import engine

        with ExitStack() as held:
            snap, volume, driver = held.enter_context(self.snapshots.held(snapshot))
            since = None
            previous = engine.last_backup_snapshot(dest, volume.name, s3_endpoint=endpoint)
            if previous and previous != snap.name:
                try:
                    earlier, _, _ = held.enter_context(self.snapshots.held(previous, volume=volume.name))
                    since = earlier.ref(volume)
                except ConvoyError:
                    pass  # deleted since: a full read of the data ranges
            source = held.enter_context(driver.open_block_snapshot(snap.ref(volume), since))
            return engine.create_image_backup(
                dest,
                volume.name,
                snap.name,
                source.path,
                s3_endpoint=endpoint,
                snapshot_created_at=snap.created_at,
                backup_name=name,
                data_ranges=source.data_ranges,
                changed_ranges=source.changed_ranges,
                previous_snapshot=source.changed_since,
                volume_size=volume.size,
                driver=volume.driver,
                progress=progress,
            )

    def list(self, dest: str, volume: str | None = None, s3_endpoint: str | None = None) -> list[JSONObject]:
        from app.backup import engine

        native = self._native(dest)
        if native is not None:
            return native[1].list_native_backups(volume)
        return engine.list_backups(dest, volume=volume, s3_endpoint=self._endpoint(s3_endpoint))

    def inspect(self, url: str, s3_endpoint: str | None = None) -> JSONObject:
        from app.backup import engine

        native = self._native(url)
        if native is not None:
            native[1].native_backup_options(url)  # the URL is valid and the snapshot there
            found = [row for row in native[1].list_native_backups(None) if row["url"] == url]
            if not found:
                raise NotFound(f"{url} is not a convoy backup: `convoy backup list {url.split('/')[0]}//` lists them")
            return found[0]
        return engine.inspect_backup(url, s3_endpoint=self._endpoint(s3_endpoint))

    def delete(self, url: str, s3_endpoint: str | None = None) -> Job:
        from app.backup import engine

        native = self._native(url)
        if native is not None:
            driver = native[1]

            def delete_native(progress: Progress) -> JSONObject:
                driver.delete_native_backup(url)
                return {"url": url}

            return self.jobs.submit("delete", f"delete of {url}", delete_native)
        logs.bind_volume(parse_backup_url(url).volume)
        endpoint = self._endpoint(s3_endpoint)
        return self.jobs.submit("delete", f"delete of {url}", lambda progress: engine.delete_backup(url, s3_endpoint=endpoint))

    def verify(self, url: str, s3_endpoint: str | None = None) -> Job:
        from app.backup import engine

        logs.bind_volume(parse_backup_url(url).volume)
        endpoint = self._endpoint(s3_endpoint)
        return self.jobs.submit(
            "verify", f"verify of {url}", lambda progress: engine.verify_backup(url, s3_endpoint=endpoint, progress=progress)
        )

    def init_store(
        self,
        dest: str,
        *,
        passphrase: str | None = None,
        key: bytes | None = None,
        s3_endpoint: str | None = None,
        block_size: str | None = None,
    ) -> JSONObject:
        """`convoy store init`: a new store, encrypted under the passphrase or key given, else plain;
        its blocks `block_size` ("4M"), else the default of its kind of store."""
        from app.backup import crypto, engine, limits

        if passphrase is not None and key is not None:
            raise InvalidInput("give a passphrase or a key for the store, not both")
        size = limits.check_new_block_size(block_size) if block_size is not None else None
        secret = crypto.Secret.passphrase(passphrase) if passphrase is not None else None
        if key is not None:
            secret = crypto.Secret.key(key, "the key given")
        return engine.init_store(dest, secret=secret, s3_endpoint=self._endpoint(s3_endpoint), block_size=size)

    # restores

    def restore(self, name: str, url: str, options: dict[str, str] | None = None, s3_endpoint: str | None = None) -> Job:
        """Create volume `name` from a backup. The volume is usable when the job is done."""
        from app.backup import engine

        if self._native(url) is not None:
            create = self._native_create_options(url, options)
            return self.jobs.submit(
                "restore",
                f"restore of {url} into volume {name}",
                lambda progress: {"volume": name, "url": url, **self.volumes.create(name, create, exist_ok=False)},
            )
        request = self._check_restore(name, url, options, s3_endpoint)
        summary = engine.inspect_backup(url, s3_endpoint=request.endpoint)  # fails now, not in the job, when it is missing
        return self._start_restore(request, summary, for_docker=False)

    def _check_restore(self, name: str, url: str, options: dict[str, str] | None, s3_endpoint: str | None) -> _RestoreRequest:
        """Everything about a restore request that can be checked without asking the store."""
        parsed = parse_backup_url(url)
        options = {k: v for k, v in (options or {}).items() if k != "backup"}
        if "schedule" in options:
            raise InvalidInput(
                "-o schedule is for a volume created empty; a restored volume joins a schedule with "
                f"`convoy schedule create NAME --volume {name} ...` once the restore is done"
            )
        driver_name, size, backend_options = self.volumes.parse_create_options(name, options)
        return _RestoreRequest(name, url, parsed, driver_name, size, backend_options, self._endpoint(s3_endpoint))

    def _start_restore(self, request: _RestoreRequest, summary: JSONObject, *, for_docker: bool) -> Job:
        """Create the volume, marked as being restored, and start the job that fills it."""
        name, url, endpoint = request.name, request.url, request.endpoint
        image = _is_image(summary)
        backup_size = summary.get("volume_size")
        if image and request.size and isinstance(backup_size, int) and request.size < backup_size:
            raise InvalidInput(
                f"size {format_size(request.size)} is smaller than the backed-up volume ({format_size(backup_size)}): "
                "give at least that size, or none"
            )
        size = request.size or backup_size
        self.volumes.create_for_restore(name, request.driver, size, request.options, str(request.parsed))
        fill = self._fill_from_image if image else self._fill_from_tree

        def work(progress: Progress) -> JSONObject:
            try:
                details, result = fill(name, url, endpoint, progress)
            except BaseException:
                self._abandon(name)
                raise
            self.volumes.finish_restore(name, details)
            return {"volume": name, **result}

        job = self.jobs.submit("restore", f"restore of {request.parsed} into volume {name}", work)
        with self._restores_lock:
            self._restores = {k: v for k, v in self._restores.items() if v[1].state == "running"}
            self._restores[name] = (str(request.parsed), job, for_docker)
        return job

    def _fill_from_tree(self, name: str, url: str, endpoint: str | None, progress: Progress) -> tuple[None, JSONObject]:
        """A tree backup, into any volume: mounted (a blank block volume gets its file system), then restored."""
        from app.backup import engine

        with self._restore_mount(name) as target:
            return None, engine.restore_backup(url, str(target), s3_endpoint=endpoint, progress=progress)

    def _fill_from_image(
        self, name: str, url: str, endpoint: str | None, progress: Progress
    ) -> tuple[JSONObject | None, JSONObject]:
        """An image backup: streamed block by block onto a block volume's device, or, for a
        directory volume, restored to a scratch image whose files are then copied in."""
        from app.backup import engine

        record = self.volumes.require(name)
        driver = self.volumes.driver(record.driver)
        if driver.capabilities.snapshots is SnapshotKind.BLOCK:
            results: JSONObject = {}

            def write(device: str) -> int:
                if filesystems.probe(device) is not None:
                    raise Conflict(f"the storage of volume {name} already holds a file system; restore into a new name")
                results.update(engine.restore_image(url, device, s3_endpoint=endpoint, progress=progress))
                image_tree.check_restored(device, f"volume {name}")  # else its first mount would format it
                return int(results.get("image_size") or 0)

            return driver.write_image(record.ref(), write), results
        scratch = self.volumes.settings.root / RESTORE_SCRATCH / name
        make_private(scratch.parent)
        image_tree.clean_scratch(scratch)
        make_private(scratch)
        try:
            result = engine.restore_image(url, str(scratch / "image"), s3_endpoint=endpoint, progress=progress)
            with (
                self._restore_mount(name) as target,
                image_tree.mounted_read_only(scratch / "image", scratch / "tree") as tree,
            ):
                progress.check("the restore")
                image_tree.copy_tree(tree, target)
        finally:
            image_tree.clean_scratch(scratch)
        return None, result

    @contextmanager
    def _restore_mount(self, name: str) -> Iterator[Path]:
        """The new volume mounted for the restore to write into; it must be empty."""
        target = Path(self.volumes.mount(name, RESTORE_REF))
        try:
            if os.listdir(target) == ["lost+found"]:
                with suppress(OSError):  # mkfs.ext4's own, empty: the backup's tree is restored as it was
                    (target / "lost+found").rmdir()
            if os.listdir(target):
                raise Conflict(f"the storage of volume {name} already holds data; restore into a new name")
            yield target
        finally:
            self.volumes.unmount(name, RESTORE_REF)

    def _native_create_options(self, url: str, options: dict[str, str] | None) -> dict[str, str]:
        """A volume made from a back-end's own backup (ebs://): that back-end creates it from the snapshot."""
        native = self._native(url)
        if native is None:
            raise InvalidInput(f"{url} is not a backup of an enabled back-end's own kind")
        driver_name, driver = native
        options = {k: v for k, v in (options or {}).items() if k != "backup"}
        if options.get("driver", driver_name) != driver_name:
            raise InvalidInput(
                f"{url} is a {driver_name} snapshot: it restores into a {driver_name} volume, not {options['driver']}; "
                "to move a volume to another back-end, back it up to vfs:// or s3:// and restore that"
            )
        return {**options, "driver": driver_name, **driver.native_backup_options(url)}

    def _abandon(self, name: str) -> None:
        """Remove a volume whose restore failed; an adopted directory keeps its data."""
        try:
            self.volumes.remove_failed_restore(name)
        except Exception:
            log.exception("could not remove %s after its failed restore; the next start removes it", name)

    def restore_for_docker(self, name: str, options: dict[str, str], timeout: float) -> None:
        """`docker volume create -o backup=URL`: restore within Docker's create deadline.

        `timeout` covers everything: the look-up of the backup in its store
        (a store that does not answer would otherwise hold Docker's call for
        minutes) and the restore itself. Nothing is created before the look-up
        has answered, so a look-up past the deadline leaves nothing behind.
        """
        started = time.monotonic()
        if self._native(options["backup"]) is not None:
            self.volumes.create(name, self._native_create_options(options["backup"], options))  # idempotent, as Docker needs
            return
        url = str(parse_backup_url(options["backup"]))
        with self._restores_lock:
            running = self._restores.get(name)
        existing = self.volumes.catalog.get(name)
        if running and running[0] == url and running[1].state == "running" and running[2]:
            job = running[1]  # Docker retried the create: join the restore under way
        elif existing is not None and existing.restoring_from:
            # another restore (the CLI's, or one from another URL): Docker must neither report it
            # done nor cancel it at its deadline
            job_hint = f" (job {running[1].id})" if running and running[1].state == "running" else ""
            raise Conflict(
                f"volume {name} is still being restored from {existing.restoring_from}{job_hint}; "
                f"wait until `convoy inspect {name}` shows it ready, then create or use it again"
            )
        elif existing is not None and existing.options.get("backup") == url:
            return  # restored already: Create is idempotent
        elif existing is not None:  # refused before the store is asked, which can take the whole deadline
            raise Conflict(
                f"volume {name} already exists and was not restored from {url}; pick another name, "
                f"or remove it first with `docker volume rm {name}`"
            )
        else:
            from app.backup import engine

            request = self._check_restore(name, url, options, None)
            summary = _within(timeout, lambda: engine.inspect_backup(url, s3_endpoint=request.endpoint))
            if summary is None:
                where = str(request.parsed.store) + (f" (endpoint {request.endpoint})" if request.endpoint else "")
                raise Unavailable(
                    f"the backup store at {where} did not answer in time for Docker's volume create "
                    f"({timeout:.0f} s); nothing was created; restore with `convoy create {name} --backup '{url}'`, "
                    "which waits as long as it needs"
                )
            job = self._start_restore(request, summary, for_docker=True)
        if not job.done.wait(max(0.0, timeout - (time.monotonic() - started))):
            job.cancel.set()
            # the clean-up (removing the half-restored volume) gets what is left of Docker's own limit
            job.done.wait(max(1.0, DOCKER_CREATE_LIMIT - CLEAN_UP_MARGIN - (time.monotonic() - started)))
            if job.state == "done":
                return  # it finished just as it was cancelled: the volume is whole
            raise Unavailable(
                f"restoring {url} takes longer than Docker allows for a volume create ({timeout:.0f} s); "
                f"restore it with `convoy create {name} --backup '{url}'`, which shows progress, "
                f"then use it with `docker run -v {name}:/data ...`"
            )
        if job.state == "failed" and job.error is not None:
            raise error_from(job.error["kind"], job.error["message"])


def _within(seconds: float, call: Callable[[], T]) -> T | None:
    """`call()`'s result, or None when it has not returned in `seconds`; its error is raised here.

    The call goes on in its own thread until it ends by itself (every store
    call has time-outs of its own); its late result is dropped.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller, who raises it
            outcome["error"] = error

    thread = threading.Thread(target=run, name="look-up-within-deadline", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return None
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]  # type: ignore[return-value]


def _is_image(summary: JSONObject) -> bool:
    """Whether a backup holds a block image (ours, or Convoy's device-mapper blocks) rather than files."""
    return summary.get("source") in ("image", "blocks")
