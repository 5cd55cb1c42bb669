"""The volume service's own rules, in process, over a fake driver: no root, no mounts.

What the service decides from a driver's declared capabilities and from its
catalog, independent of any storage: refusals by capability, the catalog's
service state (restoring, adopted), sizes a driver decides, and that shared
storage is read off the request path.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from app.catalog import Catalog
from app.errors import Conflict, InvalidInput, NotFound
from app.service import VolumeService
from app.settings import load_settings
from app.shared_volumes import SharedVolumeCache
from app.storage.driver import (
    Capabilities,
    CreatedVolume,
    SharedVolume,
    SnapshotKind,
    StorageDriver,
    VolumeRef,
    VolumeSpec,
)


@dataclass
class Calls:
    created: list[str] = field(default_factory=list)
    deleted: list[tuple[str, bool]] = field(default_factory=list)
    shared_reads: int = 0


class FakeDriver(StorageDriver):
    """Storage that exists only in memory; what it can do is whatever the test declares."""

    name = "fake"
    volume_options: ClassVar[dict[str, str]] = {"colour": "a fake option"}

    def __init__(self, capabilities: Capabilities, default_size: int | None = None):
        super().__init__({}, Path("/nonexistent"))
        self._capabilities = capabilities
        self.default_size = default_size
        self.calls = Calls()
        self.shared: list[SharedVolume] = []
        self.existing: set[str] = set()

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def create_volume(self, spec: VolumeSpec) -> CreatedVolume:
        self.calls.created.append(spec.name)
        adopted = spec.name in self.existing
        return CreatedVolume({"fake": spec.name}, size=None if spec.size else self.default_size, adopted=adopted)

    def delete_volume(self, volume: VolumeRef, keep_data: bool) -> None:
        self.calls.deleted.append((volume.name, keep_data))

    def mount(self, volume: VolumeRef, target: Path) -> None:
        raise AssertionError("the rules tested here never mount")

    def unmount(self, volume: VolumeRef, target: Path) -> None:
        pass

    def shared_volumes(self) -> list[SharedVolume]:
        self.calls.shared_reads += 1
        return list(self.shared)


@pytest.fixture
def service_on():
    """service_on(directory, driver, **env): a VolumeService over `driver`; its catalog is closed after the test
    (an open SQLite connection closed by the garbage collector later would disturb other tests' fd counts)."""
    catalogs: list[Catalog] = []

    def make(base: Path, driver: FakeDriver, **settings: str) -> VolumeService:
        loaded = load_settings(
            root=str(base / "root"), mount_root=str(base / "mounts"), drivers=["fake"], env=dict(settings)
        )
        catalogs.append(Catalog(loaded.root / "catalog.db"))
        service = VolumeService(loaded, {"fake": driver}, catalogs[-1])
        service._drivers_started.set()  # what start() does; its mount recovery needs root
        service._ready.set()
        return service

    yield make
    for catalog in catalogs:
        catalog.close()


TREE = Capabilities(snapshots=SnapshotKind.TREE, data_outside_host=False)
NO_SNAPSHOTS = Capabilities(snapshots=SnapshotKind.NONE, data_outside_host=True)


def test_a_driver_that_decides_the_size_is_what_the_catalog_shows(tmp_path, service_on):
    service = service_on(tmp_path, FakeDriver(TREE, default_size=10 << 30))
    assert service.create("v1")["size"] == 10 << 30
    assert service.create("v2", {"size": "1G"})["size"] == 1 << 30


def test_unknown_options_are_refused_with_the_driver_own_options_listed(tmp_path, service_on):
    driver = FakeDriver(TREE)
    service = service_on(tmp_path, driver)
    with pytest.raises(InvalidInput) as caught:
        service.create("v1", {"flavour": "x"})
    assert "unknown option flavour" in str(caught.value) and "colour (a fake option)" in str(caught.value)
    assert driver.calls.created == []
    service.create("v1", {"colour": "blue"})


def test_capabilities_decide_what_is_refused_before_the_driver_is_called(tmp_path, service_on):
    from app.snapshot_service import SnapshotService

    service = service_on(tmp_path, FakeDriver(NO_SNAPSHOTS))
    service.create("v1")
    with pytest.raises(InvalidInput, match="takes no snapshots"):
        SnapshotService(service).create("v1")
    with pytest.raises(InvalidInput, match="cannot resize volumes"):
        service.resize("v1", "20G")
    assert service.info()["drivers"]["fake"]["snapshots"] == "none"


def test_docker_remove_keeps_data_that_lives_outside_the_host(tmp_path, service_on):
    outside = FakeDriver(NO_SNAPSHOTS)
    service = service_on(tmp_path, outside)
    service.create("v1")
    service.delete_from_docker("v1")
    assert outside.calls.deleted == [("v1", True)]
    local = FakeDriver(TREE)
    service = service_on(tmp_path / "2", local)
    service.create("v1")
    service.delete_from_docker("v1")
    assert local.calls.deleted == [("v1", False)]


def test_a_failed_restore_keeps_adopted_storage_and_removes_new_storage(tmp_path, service_on):
    driver = FakeDriver(TREE)
    driver.existing.add("adopted")
    service = service_on(tmp_path, driver)
    for name in ("adopted", "fresh"):
        service.create_for_restore(name, "fake", None, {}, f"vfs:///store?backup=b&volume={name}")
        with pytest.raises(Conflict, match="still being restored"):
            service.delete(name, keep_data=False)
        service.remove_failed_restore(name)
    assert driver.calls.deleted == [("adopted", True), ("fresh", False)]
    assert service.list() == []


def test_list_and_get_never_read_shared_storage_on_the_request_path(tmp_path, service_on):
    driver = FakeDriver(NO_SNAPSHOTS)
    driver.shared = [SharedVolume("elsewhere", 1 << 30, "2026-01-01T00:00:00Z", {"fake": "elsewhere"})]
    service = service_on(tmp_path, driver, SHARED_REFRESH="3600")
    service.shared.refresh()  # what start() does once
    reads = driver.calls.shared_reads
    for _ in range(5):
        assert [v["name"] for v in service.list()] == ["elsewhere"]
    assert driver.calls.shared_reads == reads
    assert service.get("elsewhere")["driver"] == "fake"  # adopted into the catalog from what was read
    assert driver.calls.shared_reads == reads


def test_a_name_not_seen_reads_shared_storage_at_most_once_per_interval():
    now = [0.0]
    driver = FakeDriver(NO_SNAPSHOTS)
    cache = SharedVolumeCache(lambda: {"fake": driver}, interval=30, clock=lambda: now[0])
    for _ in range(10):
        assert cache.find("later") is None
    assert driver.calls.shared_reads == 1
    driver.shared = [SharedVolume("later", None, "2026-01-01T00:00:00Z", {})]
    now[0] = 31
    assert cache.find("later") is not None
    assert driver.calls.shared_reads == 2
    assert cache.find("later") is not None  # a hit costs nothing
    assert driver.calls.shared_reads == 2


def test_a_failing_shared_read_keeps_the_last_answer():
    driver = FakeDriver(NO_SNAPSHOTS)
    driver.shared = [SharedVolume("v", None, "2026-01-01T00:00:00Z", {})]
    cache = SharedVolumeCache(lambda: {"fake": driver})
    cache.refresh()

    def broken() -> list[SharedVolume]:
        raise OSError("NFS server not responding")

    driver.shared_volumes = broken  # type: ignore[method-assign]
    cache.refresh()
    assert [v.name for _, v in cache.all()] == ["v"]


def test_unknown_names_are_not_found_with_what_to_do(tmp_path, service_on):
    service = service_on(tmp_path, FakeDriver(TREE))
    with pytest.raises(NotFound, match="docker volume create -d convoy nope"):
        service.get("nope")


def test_a_catalog_from_before_the_service_state_columns_is_migrated(tmp_path):
    path = tmp_path / "catalog.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE volumes (name TEXT PRIMARY KEY, driver TEXT NOT NULL, size INTEGER, "
        "created_at TEXT NOT NULL, options TEXT NOT NULL, details TEXT NOT NULL);"
    )
    old_details = {"path": "/v/half", "vfs_path": "/v", "adopted": True, "restore_pending": "vfs:///s?backup=b&volume=half"}
    db.execute("INSERT INTO volumes VALUES ('half', 'vfs', NULL, 'x', '{}', ?)", (json.dumps(old_details),))
    db.execute("INSERT INTO volumes VALUES ('plain', 'vfs', NULL, 'x', '{}', ?)", (json.dumps({"path": "/v/plain"}),))
    db.commit()
    db.close()
    for _ in range(2):  # and a second open changes nothing
        catalog = Catalog(path)
        half, plain = catalog.all()
        assert half.details == {"path": "/v/half", "vfs_path": "/v"}
        assert half.restoring_from == "vfs:///s?backup=b&volume=half" and half.adopted
        assert plain.details == {"path": "/v/plain"} and plain.restoring_from is None and not plain.adopted
        catalog.close()
