"""`backup list` through the per-volume index shows exactly what the manifests say.

Whatever the index holds (nothing, stale entries, another volume's, garbage,
a bomb) and whoever wrote the store (two writers at once, a writer killed
between its manifest and the index, an older Convoy without an index), the
listing equals the one made by reading every manifest, and the next list
leaves a correct index behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import zstandard

from app.backup import SnapshotSource, create_backup, delete_backup, index, layout, limits, list_backups, manifest
from app.backup.objectstore import open_store
from app.backup.objectstore.s3 import S3Store
from app.backup.objectstore.vfs import VfsStore
from app.errors import InvalidInput
from tests.backup.manifest_listing import list_from_manifests
from tests.backup.test_crash import start, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class Store:
    """A store under test: its URL and endpoint, and raw access to its index objects."""

    def __init__(self, url: str, endpoint: str | None):
        self.url, self.endpoint = url, endpoint
        self.raw = open_store(url, s3_endpoint=endpoint)

    def back_up(self, volume: str, src: Path, text: str, name: str | None = None) -> dict:
        src.mkdir(exist_ok=True)
        (src / "f.txt").write_text(text)
        snapshot = SnapshotSource(f"snap-{text}", str(src))
        return create_backup(self.url, volume, snapshot, s3_endpoint=self.endpoint, backup_name=name)

    def listing(self) -> list[dict]:
        return list_backups(self.url, s3_endpoint=self.endpoint)

    def reference(self) -> list[dict]:
        return list_from_manifests(self.url, self.endpoint)

    def index_bytes(self, volume: str) -> bytes | None:
        key = layout.index_key(volume)
        return self.raw.get(key) if self.raw.exists(key) else None

    def index(self, volume: str) -> dict | None:
        data = self.index_bytes(volume)
        return json.loads(zstandard.ZstdDecompressor().decompress(data)) if data is not None else None

    def indexed_names(self, volume: str) -> list[str]:
        return sorted((self.index(volume) or {"backups": {}})["backups"])

    def put_index(self, volume: str, data: bytes) -> None:
        self.raw.put(layout.index_key(volume), data)

    def put_index_doc(self, volume: str, doc: dict) -> None:
        self.put_index(volume, zstandard.ZstdCompressor().compress(json.dumps(doc).encode()))


@pytest.fixture
def store(dest):
    s = Store(*dest)
    yield s
    s.raw.close()


def names(rows: list[dict]) -> list[str]:
    return sorted(r["name"] for r in rows)


def test_list_equals_the_manifests_after_creates_and_deletes(store, tmp_path):
    one = [store.back_up("vol1", tmp_path / "a", f"a{i}") for i in range(3)]
    two = [store.back_up("vol2", tmp_path / "b", f"b{i}") for i in range(2)]
    assert store.listing() == store.reference()
    assert names(store.listing()) == sorted(b["name"] for b in one + two)
    assert store.indexed_names("vol1") == sorted(b["name"] for b in one)
    assert store.indexed_names("vol2") == sorted(b["name"] for b in two)
    only_two = list_backups(store.url, volume="vol2", s3_endpoint=store.endpoint)
    assert only_two == [r for r in store.reference() if r["volume"] == "vol2"]
    with pytest.raises(InvalidInput, match=r"volume name '\.\./vol1' is not valid"):
        list_backups(store.url, volume="../vol1", s3_endpoint=store.endpoint)

    delete_backup(one[1]["url"], s3_endpoint=store.endpoint)
    assert store.indexed_names("vol1") == sorted([one[0]["name"], one[2]["name"]])
    assert store.listing() == store.reference()
    for b in two:
        delete_backup(b["url"], s3_endpoint=store.endpoint)
    assert store.index_bytes("vol2") is None  # gone with the volume's last backup
    assert store.listing() == store.reference() and names(store.listing()) == sorted([one[0]["name"], one[2]["name"]])


def test_a_missing_index_is_rebuilt_by_the_next_list(store, tmp_path):
    """A store written by a Convoy before indexes, or whose indexes were removed."""
    made = [store.back_up(vol, tmp_path / vol, f"{vol}-{i}") for vol in ("vol1", "vol2") for i in range(2)]
    for vol in ("vol1", "vol2"):
        store.raw.delete(layout.index_key(vol))
    assert store.listing() == store.reference()
    assert names(store.listing()) == sorted(b["name"] for b in made)
    assert sorted(store.indexed_names("vol1") + store.indexed_names("vol2")) == sorted(b["name"] for b in made)


def test_a_stale_index_drops_deleted_backups_and_adds_missing_ones(store, tmp_path):
    """As another host's late write, or a writer killed between manifest and index, leaves it."""
    b1 = store.back_up("vol1", tmp_path / "a", "one")
    b2 = store.back_up("vol1", tmp_path / "a", "two")
    old = store.index_bytes("vol1")  # knows b1 and b2
    b3 = store.back_up("vol1", tmp_path / "a", "three")
    delete_backup(b1["url"], s3_endpoint=store.endpoint)
    store.put_index("vol1", old)  # an extra entry (b1) and a missing one (b3)

    assert store.listing() == store.reference()
    assert names(store.listing()) == sorted([b2["name"], b3["name"]])
    assert store.indexed_names("vol1") == sorted([b2["name"], b3["name"]])  # repaired


def test_a_manifest_replaced_under_its_entry_is_read_again(store, tmp_path, monkeypatch):
    """Replaced by hand, volume.json untouched: read at once where listing is cheap (vfs);
    on S3 the index is believed until it is REVALIDATE_AFTER old. Replaced with volume.json
    rewritten (as every backup and delete does): read at once everywhere."""
    b1 = store.back_up("vol1", tmp_path / "a", "one")
    key = layout.backup_key("vol1", b1["name"])

    def replace_snapshot_name(name: str) -> None:
        doc = json.loads(zstandard.ZstdDecompressor().decompress(store.raw.get(key)))
        store.raw.put(key, manifest.encode_manifest({**doc, "snapshot": name}))

    replace_snapshot_name("restored-from-a-copy")
    [row] = store.listing()
    believed = store.raw.costly_listing  # within the hour (docs/backup-format.md)
    assert row["snapshot"] == ("snap-one" if believed else "restored-from-a-copy")
    monkeypatch.setattr(index, "REVALIDATE_AFTER", 0.0)  # an hour later
    [row] = store.listing()
    assert row["snapshot"] == "restored-from-a-copy" and store.listing() == store.reference()
    monkeypatch.undo()
    [row] = store.listing()
    assert row["snapshot"] == "restored-from-a-copy", "the index must have been repaired"

    replace_snapshot_name("second-copy")
    manifest.touch_volume(store.raw, "vol1")
    [row] = store.listing()
    assert row["snapshot"] == "second-copy" and store.listing() == store.reference()


class CountedListings:
    """Counts the listings of volume prefixes that `backup list` makes (the cost the index saves)."""

    def __init__(self, monkeypatch):
        self.prefixes: list[str] = []
        for cls in (VfsStore, S3Store):
            real = cls.list_stamped

            def counted(obj, prefix, real=real):
                self.prefixes.append(prefix)
                return real(obj, prefix)

            monkeypatch.setattr(cls, "list_stamped", counted)

    def take(self) -> list[str]:
        """The volume prefixes listed since the last take (not Convoy 0.5.2's, which have no index)."""
        taken, self.prefixes = self.prefixes, []
        return [p for p in taken if p.startswith(layout.VOLUMES)]


def test_a_list_believes_an_index_that_backups_and_deletes_kept_current_without_listing_its_manifests(
    store, tmp_path, monkeypatch
):
    made = [store.back_up(vol, tmp_path / vol, f"{vol}-{i}") for vol in ("vol1", "vol2") for i in range(3)]
    delete_backup(made[0]["url"], s3_endpoint=store.endpoint)
    every_volume = [layout.volume_prefix("vol1"), layout.volume_prefix("vol2")]
    listings = CountedListings(monkeypatch)
    assert names(store.listing()) == sorted(b["name"] for b in made[1:])
    # S3: current indexes need no listing; vfs lists always (a directory costs microseconds)
    assert sorted(listings.take()) == ([] if store.raw.costly_listing else every_volume)
    assert store.listing() == store.reference()

    store.raw.delete(layout.index_key("vol2"))
    listings.take()
    assert names(store.listing()) == sorted(b["name"] for b in made[1:])
    assert sorted(listings.take()) == ([every_volume[1]] if store.raw.costly_listing else every_volume)


def test_a_writer_killed_before_its_volume_json_follows_its_manifest_is_listed_at_once(store, tmp_path, monkeypatch):
    """The crash falls between the manifest and volume.json's second write: the first write,
    made before the manifest, has already told every index it is out of date."""
    store.back_up("vol1", tmp_path / "a", "one")
    real_write_volume = manifest.write_volume
    writes = []

    def dies_after_the_manifest(*args, **kwargs):
        writes.append(kwargs.get("last_backup"))
        if kwargs.get("last_backup"):  # the write that names the new backup: its manifest is stored
            raise KeyboardInterrupt("killed")  # nothing after it runs, as after kill -9
        real_write_volume(*args, **kwargs)

    monkeypatch.setattr(manifest, "write_volume", dies_after_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        store.back_up("vol1", tmp_path / "a", "two")
    monkeypatch.undo()
    assert writes == [None, writes[1]] and len(store.indexed_names("vol1")) == 1
    assert len(store.listing()) == 2 and store.listing() == store.reference()


def _zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def _doc_with(change):
    def make(doc: dict) -> bytes:
        change(doc)
        return _zst(json.dumps(doc).encode())
    return make


def _plant_entry(doc: dict) -> None:
    """An entry for a backup that has no manifest: never listed."""
    entry = next(iter(doc["backups"].values()))
    fake = {**entry["summary"], "name": "backup-0000000000000000"}
    doc["backups"]["backup-0000000000000000"] = {"stamp": entry["stamp"], "summary": fake}


# (id, new index from the real one's JSON document)
CORRUPT = [
    ("not-zstd", lambda doc: b"garbage"),
    ("not-json", lambda doc: _zst(b"{nope")),
    ("a-list", lambda doc: _zst(b"[1, 2]")),
    ("bytes-after-the-frame", lambda doc: _zst(json.dumps(doc).encode()) + b"x"),
    ("newer-version", _doc_with(lambda d: d.update(version=2))),
    ("another-format", _doc_with(lambda d: d.update(format="convoy-py-backup"))),
    ("entries-a-list", _doc_with(lambda d: d.update(backups=[1]))),
    ("summary-wrong-type", _doc_with(lambda d: next(iter(d["backups"].values()))["summary"].update(block_size="1M"))),
    ("stamp-missing", _doc_with(lambda d: next(iter(d["backups"].values())).pop("stamp"))),
    ("decompresses-past-the-cap", lambda doc: _zst(b" " * (limits.MAX_INDEX + 1))),
]


@pytest.mark.parametrize("case,corrupt", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_a_corrupt_index_is_ignored_and_rebuilt(store, tmp_path, case, corrupt):
    made = [store.back_up("vol1", tmp_path / "a", f"v{i}") for i in range(2)]
    store.put_index("vol1", corrupt(store.index("vol1")))

    assert store.listing() == store.reference()
    assert names(store.listing()) == sorted(b["name"] for b in made)
    assert store.indexed_names("vol1") == sorted(b["name"] for b in made)  # rebuilt


def test_an_entry_planted_in_a_current_index_is_dropped_at_its_next_check_against_the_listing(store, tmp_path, monkeypatch):
    """An index edited by hand is like a manifest edited by hand: volume.json does not change,
    so it is believed until it is REVALIDATE_AFTER old (a restore of the phantom says it is missing)."""
    made = [store.back_up("vol1", tmp_path / "a", f"v{i}") for i in range(2)]
    store.put_index("vol1", _doc_with(_plant_entry)(store.index("vol1")))
    monkeypatch.setattr(index, "REVALIDATE_AFTER", 0.0)

    assert store.listing() == store.reference()
    assert store.indexed_names("vol1") == sorted(b["name"] for b in made)  # rebuilt


def test_an_index_too_big_to_read_is_not_read(tmp_path):
    store = Store(f"vfs://{tmp_path}/store", None)
    made = store.back_up("vol1", tmp_path / "a", "one")
    with open(tmp_path / "store" / layout.index_key("vol1"), "r+b") as f:
        f.truncate(limits.MAX_INDEX + 1)  # sparse: costs nothing, and would cost 64 MiB to read
    assert names(store.listing()) == [made["name"]] and store.listing() == store.reference()
    assert store.indexed_names("vol1") == [made["name"]]


def test_an_index_of_another_volume_is_not_believed(store, tmp_path):
    """Two volumes with a backup of the same name: vol1's index put in vol2's place lists vol2's own."""
    store.back_up("vol1", tmp_path / "a", "of-vol1", name="nightly")
    store.back_up("vol2", tmp_path / "b", "of-vol2", name="nightly")
    foreign = store.index("vol1")
    store.put_index_doc("vol2", foreign)
    assert store.listing() == store.reference()
    store.put_index_doc("vol2", {**foreign, "volume": "vol2"})  # relabelled: its entry still says vol1
    rows = {r["volume"]: r for r in store.listing()}
    assert rows["vol2"]["snapshot"] == "snap-of-vol2" and store.listing() == store.reference()
    assert store.index("vol2")["volume"] == "vol2"
    assert store.index("vol2")["backups"]["nightly"]["summary"]["snapshot"] == "snap-of-vol2"


def test_two_writers_at_once_lose_no_backup(store, tmp_path):
    """Backups of one volume from two hosts at once: each writes the index it saw last; none is lost."""
    made: list[dict] = []
    errors: list[BaseException] = []

    def host(n: int) -> None:
        try:
            for i in range(3):
                made.append(store.back_up("vol1", tmp_path / f"host{n}", f"host{n}-{i}"))
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)

    threads = [threading.Thread(target=host, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert names(store.listing()) == sorted(b["name"] for b in made)
    assert store.listing() == store.reference()
    assert store.indexed_names("vol1") == sorted(b["name"] for b in made)


def test_a_writer_killed_between_manifest_and_index_leaves_what_the_next_list_repairs(tmp_path):
    store = Store(f"vfs://{tmp_path}/store", None)
    first = store.back_up("vol1", tmp_path / "a", "one")
    proc = start("backup-stall-index", store.url, "vol1", str(tmp_path / "a"))
    manifests = tmp_path / "store" / layout.backups_prefix("vol1")
    wait_for(lambda: len([p for p in os.listdir(manifests) if ".tmp-" not in p]) == 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.indexed_names("vol1") == [first["name"]]  # killed before it wrote the index

    assert len(store.listing()) == 2 and store.listing() == store.reference()
    assert len(store.indexed_names("vol1")) == 2


@pytest.fixture
def read_only_view(tmp_path):
    """A read-only bind mount of a directory (a store on a read-only mount or share)."""
    views = []

    def make(path: Path) -> Path:
        view = tmp_path / f"ro-{len(views)}"
        view.mkdir()
        subprocess.run(["mount", "--bind", str(path), str(view)], check=True)
        views.append(view)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        return view

    yield make
    for view in views:
        subprocess.run(["umount", str(view)], check=False)


@pytest.mark.needs_root
def test_a_read_only_store_lists_with_a_stale_index(tmp_path, read_only_view):
    store = Store(f"vfs://{tmp_path}/store", None)
    b1 = store.back_up("vol1", tmp_path / "a", "one")
    old = store.index_bytes("vol1")
    b2 = store.back_up("vol1", tmp_path / "a", "two")
    store.put_index("vol1", old)  # lacks b2
    view = Store(f"vfs://{read_only_view(tmp_path / 'store')}", None)
    assert names(view.listing()) == sorted([b1["name"], b2["name"]]) and view.listing() == view.reference()
    assert view.index_bytes("vol1") == old  # not written, and nothing failed


def test_convoy_backups_list_beside_ours(tmp_path):
    store_dir = tmp_path / "store"
    shutil.copytree(FIXTURES / "convoy-0.5.2-vfs-backup" / "convoy-objectstore", store_dir / "convoy-objectstore")
    store = Store(f"vfs://{store_dir}", None)
    ours = store.back_up("fixvol", tmp_path / "a", "ours")
    rows = store.listing()
    assert sorted((r["name"], r.get("format")) for r in rows) == sorted(
        [(ours["name"], "convoy-py-backup"), ("backup-90df2b1db9084d50", "convoy-0.5.2")]
    )
    assert [r for r in rows if r["name"] == ours["name"]] == store.reference()


def test_a_delete_killed_right_after_removing_the_manifest_is_listed_at_once(store, tmp_path, monkeypatch):
    """volume.json's write before the removal has already told the index it is out of date."""
    made = [store.back_up("vol1", tmp_path / "a", f"v{i}") for i in range(3)]
    real_delete = type(store.raw).delete

    def dies_after_removing_a_manifest(obj, key):
        real_delete(obj, key)
        if layout.parse_backup_key(key):
            raise KeyboardInterrupt("killed")  # nothing after it runs, as after kill -9

    monkeypatch.setattr(type(store.raw), "delete", dies_after_removing_a_manifest)
    with pytest.raises(KeyboardInterrupt):
        delete_backup(made[1]["url"], s3_endpoint=store.endpoint)
    monkeypatch.undo()
    assert len(store.indexed_names("vol1")) == 3  # killed before the index was written
    assert names(store.listing()) == sorted([made[0]["name"], made[2]["name"]]) and store.listing() == store.reference()
