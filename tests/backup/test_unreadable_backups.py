"""One bad object never takes down a whole store: through the daemon and the CLI.

A malformed manifest or Convoy .cfg is listed with the reason while the
other backups list, delete and restore as before; a damaged volume.json or
lock record never stops a new backup; a damaged store config is refused
with an error naming the field.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import zstandard

from app.backup import layout, manifest
from app.backup.legacy_convoy import backup_cfg_key
from app.cli.output import EXIT_CODES
from tests.daemon_harness import cli_json

pytestmark = pytest.mark.needs_root

DM_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "convoy-0.5.2-devicemapper-backup"
DM_BACKUP = "backup-a0cff4ada769456c"




def back_up(daemon, volume: str, store: str, content: str) -> str:
    """A new backup of `volume` (created on first use) holding one file; its URL."""
    if daemon.cli("inspect", volume).returncode != 0:
        daemon.cli("create", volume, check=True)
    (daemon.root / "vfs" / volume / "f.txt").write_text(content)
    snapshot = daemon.cli("snapshot", "create", volume, check=True).stdout.strip()
    return daemon.cli("backup", "create", snapshot, "--dest", store, check=True).stdout.strip()


def name_of(url: str) -> str:
    return url.split("backup=")[1].split("&")[0]


@pytest.fixture
def populated(daemon, tmp_path):
    """A store with two backups of vol1 and one of vol2; (daemon, store dir, store URL, urls)."""
    store_dir = tmp_path / "store"
    store = f"vfs://{store_dir}"
    urls = [back_up(daemon, "vol1", store, "one"), back_up(daemon, "vol1", store, "two"), back_up(daemon, "vol2", store, "three")]
    return daemon, store_dir, store, urls


def zst(text: str) -> bytes:
    return zstandard.ZstdCompressor().compress(text.encode())


def good_manifest(store_dir: Path, url: str) -> dict:
    data = (store_dir / layout.backup_key("vol2", name_of(url))).read_bytes()
    return json.loads(zstandard.ZstdDecompressor().decompress(data))


def altered(change):
    """A damage: the real manifest with `change(doc)` applied."""
    def make(doc: dict) -> bytes:
        change(doc)
        return zst(json.dumps(doc))
    return make


# (id, new content of vol2's manifest from the real one, what the reason must say)
DAMAGES = [
    ("json-list", lambda doc: zst("[1, 2]"), "should be a valid dictionary"),
    ("not-zstd", lambda doc: b"garbage", "cannot be decompressed"),
    ("not-json", lambda doc: zst("{nope"), "not JSON"),
    ("version-a-string", altered(lambda d: d.update(version="1")),
     "format version '1' is not an integer; the store is damaged"),
    ("version-newer", altered(lambda d: d.update(version=2, entries="new layout")), "upgrade Convoy"),
    ("entries-missing", altered(lambda d: d.pop("entries")), "entries: Field required"),
    ("entries-wrong-type", altered(lambda d: d.update(entries={"a": 1})), "entries: Input should be a valid list"),
    ("size-negative", altered(lambda d: d["entries"][1].update(size=-1)), "entries.1.file.size"),
    ("size-2^63", altered(lambda d: d["entries"][1].update(size=1 << 63)), "entries.1.file.size"),
    ("mode-out-of-range", altered(lambda d: d["entries"][0].update(mode=1 << 20)), "entries.0.dir.mode"),
    ("hash-malformed", altered(lambda d: d["entries"][1]["blocks"][0].__setitem__(2, "../../etc")), "entries.1.file.blocks.0.2"),
    ("block-outside-its-file", altered(lambda d: d["entries"][1]["blocks"][0].__setitem__(0, 1 << 40)), "outside the file"),
    ("unknown-entry-type", altered(lambda d: d["entries"][1].update(type="socket")), "entries.1"),
    ("uid-a-string", altered(lambda d: d["entries"][1].update(uid="0")), "entries.1.file.uid"),
    ("volume-size-2^64", altered(lambda d: d.update(volume_size=1 << 64)), "volume_size"),
    ("file-without-blocks", altered(lambda d: d["entries"][1].pop("blocks")), "entries.1.file.blocks: Field required"),
    ("renamed-by-hand", altered(lambda d: d.update(name="backup-0000000000000000")), "moved or copied by hand"),
]


@pytest.mark.parametrize("case,damage,reason", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_a_damaged_manifest_is_listed_with_its_reason_and_the_rest_still_works(populated, tmp_path, case, damage, reason):
    daemon, store_dir, store, (one, two, three) = populated
    key = layout.backup_key("vol2", name_of(three))
    (store_dir / key).write_bytes(damage(good_manifest(store_dir, three)))

    listing = daemon.cli("backup", "list", store)
    assert listing.returncode == 0, listing.stderr
    assert all(url in listing.stdout for url in (one, two, three))
    assert f"convoy: {three}: " in listing.stderr and key in listing.stderr and reason in listing.stderr
    rows = {row["url"]: row for row in cli_json(daemon, "backup", "list", store)}
    assert reason in rows[three]["error"] and "error" not in rows[one]

    # a newer format is no damage: upgrading Convoy reads it
    code = EXIT_CODES["conflict" if case == "version-newer" else "damaged"]
    inspect = daemon.cli("backup", "inspect", three)
    assert inspect.returncode == code and reason in inspect.stderr
    restore = daemon.cli("create", "from-damaged", "--backup", three)
    assert restore.returncode == code and reason in restore.stderr
    assert daemon.cli("inspect", "from-damaged").returncode == 3  # nothing was created

    # deleting another backup works, but keeps every block (any may be the damaged backup's)
    blocks_before = sorted((store_dir / layout.BLOCKS).rglob("*"))
    deleted = daemon.cli("backup", "delete", two)
    assert deleted.returncode == 0, deleted.stderr
    assert "unused blocks were kept" in deleted.stderr and name_of(three) in deleted.stderr
    assert sorted((store_dir / layout.BLOCKS).rglob("*")) == blocks_before
    assert two not in daemon.cli("backup", "list", store).stdout

    # a new backup of the damaged backup's volume is not based on it, and restores
    four = back_up(daemon, "vol2", store, "four")
    daemon.cli("create", "restored", "--backup", four, check=True)
    assert (daemon.root / "vfs" / "restored" / "f.txt").read_text() == "four"

    # the damaged backup itself can be deleted; then unused blocks go again
    assert daemon.cli("backup", "delete", three, check=True).stderr == ""
    assert "Traceback" not in daemon.log_text() and "internal error" not in daemon.log_text()


CFG_DAMAGES = [
    ("json-list", "[1, 2]", "the document: Input should be an object"),
    ("wrong-types", '{"Name": 5, "VolumeName": "dmvol", "Blocks": {"Offset": "0"}}', "Name: Input should be a valid string"),
    ("not-json", "{nope", "Invalid JSON"),
]


@pytest.mark.parametrize("case,text,reason", CFG_DAMAGES, ids=[d[0] for d in CFG_DAMAGES])
def test_a_damaged_convoy_cfg_is_listed_with_its_reason(populated, case, text, reason):
    daemon, store_dir, store, (_one, two, _three) = populated
    shutil.copytree(DM_FIXTURE / "convoy-objectstore", store_dir / "convoy-objectstore")
    (store_dir / backup_cfg_key("dmvol", DM_BACKUP)).write_text(text)

    listing = daemon.cli("backup", "list", store)
    assert listing.returncode == 0, listing.stderr
    assert f"backup={DM_BACKUP}&volume=dmvol" in listing.stdout and "backup-5c64cee5a72f498b" in listing.stdout
    assert backup_cfg_key("dmvol", DM_BACKUP) in listing.stderr and reason in listing.stderr
    assert daemon.cli("backup", "delete", two, check=True).returncode == 0
    assert "Traceback" not in daemon.log_text()


VOLUME_DOC_DAMAGES = [
    ("missing", None),
    ("json-list", b"[1]"),
    ("null", b"null"),
    ("wrong-types", b'{"format": "convoy-py-volume", "version": 1, "name": 5, "last_backup": 7}'),
    ("bad-last-backup", b'{"format": "convoy-py-volume", "version": 1, "name": "vol1", "last_backup": "../../x"}'),
    ("not-json", b"\x00\x01"),
    ("huge", "sparse"),
]


@pytest.mark.parametrize("case,content", VOLUME_DOC_DAMAGES, ids=[d[0] for d in VOLUME_DOC_DAMAGES])
def test_a_damaged_volume_json_never_stops_the_next_backup(populated, case, content):
    daemon, store_dir, store, (_one, two, _three) = populated
    path = store_dir / layout.volume_key("vol1")
    if content is None:
        path.unlink()
    elif content == "sparse":
        with open(path, "wb") as f:
            f.truncate(1 << 30)
    else:
        path.write_bytes(content)
    url = back_up(daemon, "vol1", store, "again")
    rewritten = json.loads(path.read_text())
    assert rewritten["name"] == "vol1" and rewritten["last_backup"] == name_of(url)
    assert cli_json(daemon, "backup", "inspect", url)["base_backup"] == name_of(two)  # found by listing
    assert "Traceback" not in daemon.log_text()


LOCK = '{"id": "junk", "kind": "exclusive", "operation": "x", "host": "h", "pid": 1, "expires_at": %s}'
LOCK_DAMAGES = [
    ("json-list", '["not", "a", "lock"]'),
    ("expires-never", LOCK % "Infinity"),
    ("expires-a-string", LOCK % '"tomorrow"'),
    ("fields-missing", '{"id": "junk"}'),
    ("huge", None),
]


@pytest.mark.parametrize("case,text", LOCK_DAMAGES, ids=[d[0] for d in LOCK_DAMAGES])
def test_a_malformed_lock_record_is_ignored(populated, case, text):
    daemon, store_dir, store, (one, _two, _three) = populated
    path = store_dir / layout.lock_key("junk")
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        with open(path, "wb") as f:
            f.truncate(1 << 30)
    else:
        path.write_text(text)
    back_up(daemon, "vol1", store, "again")
    assert daemon.cli("backup", "delete", one, check=True).returncode == 0
    assert "lock convoy-store/locks/junk.json" in daemon.log_text()  # the warning names it
    assert "Traceback" not in daemon.log_text()


CONFIG_DAMAGES = [
    ("block-size-1TiB", {"block_size": 1 << 40}, "block_size"),
    ("block-size-a-string", {"block_size": "1048576"}, "block_size"),
    ("version-a-string", {"version": "1"}, "format version '1' is not an integer; the store is damaged"),
    ("not-a-store-config", {"format": "something-else"}, "is not a Convoy store config"),
]


@pytest.mark.parametrize("case,change,reason", CONFIG_DAMAGES, ids=[d[0] for d in CONFIG_DAMAGES])
def test_a_damaged_store_config_is_refused_naming_the_field(populated, case, change, reason):
    daemon, store_dir, store, _urls = populated
    path = store_dir / layout.CONFIG
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    snapshot = daemon.cli("snapshot", "create", "vol1", check=True).stdout.strip()
    result = daemon.cli("backup", "create", snapshot, "--dest", store)
    assert result.returncode == EXIT_CODES["damaged"], result.stderr
    assert layout.CONFIG in result.stderr and reason in result.stderr
    assert "Traceback" not in daemon.log_text()


def test_manifest_schema_accepts_what_backups_write(populated):
    """The schema reads every real manifest (entries of each type, xattrs, non-UTF-8 names)."""
    daemon, store_dir, store, _urls = populated
    volume = daemon.root / "vfs" / "vol1"
    (volume / "sub").mkdir()
    (volume / "sub" / "link").symlink_to("../f.txt")
    (volume / "hard").hardlink_to(volume / "f.txt")
    (volume / "sparse").write_bytes(b"x")
    with open(volume / "sparse", "r+b") as f:
        f.truncate(10 << 20)
    import os

    os.mkfifo(volume / "fifo")
    os.setxattr(volume / "f.txt", "user.note", b"\x00\xffbinary")
    (volume / os.fsdecode(b"name-\xff-latin1")).write_text("x")
    url = back_up(daemon, "vol1", store, "everything")
    manifest.read_backup(manifest_store(store_dir), "vol1", name_of(url))
    assert "intact" in daemon.cli("backup", "verify", url, check=True).stdout


def manifest_store(store_dir: Path):
    from app.backup.objectstore import open_store

    return open_store(f"vfs://{store_dir}")


# (id, fields added to a manifest as JSON text, what inspect shows of them)
EXTRAS = [
    ("nested-900-deep", '"x": ' + "[" * 900 + "]" * 900, {"x": "absent"}),
    ("a-flat-object", '"x": {"a": 1}, "note": "kept"', {"x": {"a": 1}, "note": "kept"}),
    ("a-nested-object", '"x": {"a": {"b": 1}}, "y": [1]', {"x": "absent", "y": "absent"}),
    ("names-the-listing-uses", '"url": "vfs:///elsewhere", "error": "fake"', {"error": "absent"}),
    ("scalars", '"writer": "other-tool", "level": 3, "flag": true, "none": null',
     {"writer": "other-tool", "level": 3, "flag": True, "none": None}),
]


@pytest.mark.parametrize("case,extras,shown", EXTRAS, ids=[e[0] for e in EXTRAS])
def test_a_manifests_unknown_fields_are_shown_only_when_flat(populated, case, extras, shown):
    """`backup list`/`inspect` show what another writer added, but only plain
    values or flat objects of them: a deeply nested one broke the encoding
    of the response."""
    daemon, store_dir, store, urls = populated
    key = layout.backup_key("vol2", name_of(urls[2]))
    text = zstandard.ZstdDecompressor().decompress((store_dir / key).read_bytes()).decode()
    (store_dir / key).write_bytes(zst(text[:-1] + ", " + extras + "}"))
    rows = {row["url"]: row for row in cli_json(daemon, "backup", "list", store)}
    assert "error" not in rows[urls[2]] and rows[urls[2]]["volume"] == "vol2"
    inspected = cli_json(daemon, "backup", "inspect", urls[2])
    assert inspected["url"] == urls[2]
    assert {k: inspected.get(k, "absent") for k in shown} == shown
    assert "Traceback" not in daemon.log_text()
