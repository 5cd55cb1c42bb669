"""A store is input: hostile objects in it fail the operation with an error
naming the object, and the process reading them stays small.

Each case plants one object (our format or Convoy 0.5.2's) in a real store,
then runs one operation in a fresh Python process (as tests/backup/test_memory.py
does) and checks what a user sees (the error, a verify report, a list row)
and the peak RSS of that process (VmHWM).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import zstandard

from app.backup import SnapshotSource, blocks, create_backup, layout, limits, manifest
from app.backup.legacy_convoy import backup_cfg_key, volume_dir
from app.backup.locks import StoreLock, remove_expired_locks
from app.backup.objectstore import open_store

ROOT = Path(__file__).resolve().parents[2]
DM_FIXTURE = ROOT / "tests" / "fixtures" / "convoy-0.5.2-devicemapper-backup"
DM_BACKUP = "backup-a0cff4ada769456c"
PEAK_MIB = 300

RUNNER = """
import json, sys
from app.backup import SnapshotSource, create_backup, list_backups, restore_backup, restore_image, verify_backup
from app.errors import ConvoyError

op, url, arg = sys.argv[1:]
try:
    if op == "restore":
        result = restore_backup(url, arg)
    elif op == "restore-image":
        result = restore_image(url, arg)
    elif op == "verify":
        result = verify_backup(url)
    elif op == "list":
        result = list_backups(url)
    else:
        result = create_backup(url, "vol1", SnapshotSource("s2", arg))
    out = {"ok": True, "result": result}
except ConvoyError as e:
    out = {"ok": False, "kind": e.kind, "message": str(e)}
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        out["peak_mib"] = int(line.split()[1]) // 1024
print(json.dumps(out, default=str))
"""


def run(op: str, url: str, arg: str = "-", s3_endpoint: str | None = None) -> dict:
    env = {**os.environ, **({"AWS_ENDPOINT_URL_S3": s3_endpoint} if s3_endpoint else {})}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, op, url, arg], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def what_the_user_sees(op: str, out: dict) -> str:
    """The error, or for list the unreadable rows, or for verify its report."""
    if not out["ok"]:
        return out["message"]
    if op == "list":
        return " | ".join(row["error"] for row in out["result"] if "error" in row)
    if op == "verify":
        assert not out["result"]["ok"], out["result"]
        return out["result"]["message"]
    return ""


# -- building hostile objects ------------------------------------------------------


def sparse_file(path: Path, size: int) -> None:
    """A file that claims `size` bytes without using the disk for them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def frame_declaring(content: bytes, declared: int) -> bytes:
    """A zstd frame of raw blocks whose header claims `declared` bytes of content."""
    parts = blocks._raw_frame(memoryview(content))
    return b"".join([parts[0][:5] + declared.to_bytes(8, "little"), *map(bytes, parts[1:])])


def manifest_of_whitespace(total: int) -> bytes:
    """A manifest that is valid JSON: a header, `total` bytes of spaces, the end.
    Compressed with its size in the frame header, as any zstd writer does."""
    head = b'{"format":"convoy-py-backup","version":1,"entries":['
    cctx = zstandard.ZstdCompressor(level=3)
    chunker = cctx.chunker(size=total + len(head) + 2)
    out = [bytes(c) for c in chunker.compress(head)]
    spaces = b" " * (8 << 20)
    for _ in range(total // len(spaces)):
        out += [bytes(c) for c in chunker.compress(spaces)]
    out += [bytes(c) for c in chunker.compress(b"]}")]
    out += [bytes(c) for c in chunker.finish()]
    return b"".join(out)


def gzip_bomb(total: int) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(16 << 20)
    parts = [deflate.compress(zeros) for _ in range(total // len(zeros))]
    return b"".join(parts) + deflate.flush()


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, bytes]:
    return {"manifest_1g": manifest_of_whitespace(1 << 30), "gzip_1500m": gzip_bomb(1500 << 20)}


@pytest.fixture
def ours(tmp_path):
    """A store with one real backup of vol1; (store dir, URL of the backup, the backup's name)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(200_000))
    (src / "b.txt").write_text("hello\n")
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s1", str(src)))
    return tmp_path / "store", result["url"], result["name"]


def plant_manifest(store_dir: Path, name: str, doc_changes: dict | None = None, raw: bytes | None = None) -> str:
    """Write (or overwrite) backup `name` of vol1; returns its key."""
    key = layout.backup_key("vol1", name)
    if raw is None:
        store = open_store(f"vfs://{store_dir}")
        doc = manifest.read_backup(store, "vol1", _first_backup(store_dir))
        raw = manifest.encode_manifest({**doc, "name": name, **(doc_changes or {})})
    (store_dir / key).write_bytes(raw)
    return key


def _first_backup(store_dir: Path) -> str:
    names = sorted(p.name for p in (store_dir / layout.backups_prefix("vol1")).iterdir())
    return names[0][: -len(layout.MANIFEST_SUFFIX)]


def blocks_declaring_2gib(store_dir: Path, name: str) -> str:
    real = manifest.read_backup(open_store(f"vfs://{store_dir}"), "vol1", name)
    digests = [b[2] for e in real["entries"] for b in e.get("blocks", ())]
    entry = {"path": "big", "type": "file", "mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": 0, "size": 8 << 30,
             "blocks": [[i << 31, 1 << 31, digests[i % len(digests)]] for i in range(4)]}
    root = real["entries"][0]
    return plant_manifest(store_dir, name, {"entries": [root, entry]})


# Each case: (id, operation, plant(store_dir, backup name, bombs) -> the object's key)
OUR_CASES = [
    ("blocks-declaring-2GiB-restore", "restore", lambda d, n, b: blocks_declaring_2gib(d, n)),
    ("blocks-declaring-2GiB-verify", "verify", lambda d, n, b: blocks_declaring_2gib(d, n)),
    ("blocks-declaring-2GiB-list", "list", lambda d, n, b: blocks_declaring_2gib(d, n)),
    ("manifest-32KiB-of-1GiB-restore", "restore", lambda d, n, b: plant_manifest(d, n, raw=b["manifest_1g"])),
    ("manifest-32KiB-of-1GiB-list", "list", lambda d, n, b: plant_manifest(d, n, raw=b["manifest_1g"])),
    ("manifest-declaring-1TiB-verify", "verify",
     lambda d, n, b: plant_manifest(d, n, raw=frame_declaring(b'{"format":"convoy-py-backup"}', 1 << 40))),
    ("manifest-declaring-1TiB-list", "list",
     lambda d, n, b: plant_manifest(d, n, raw=frame_declaring(b'{"format":"convoy-py-backup"}', 1 << 40))),
    ("manifest-object-of-1.5GiB-list", "list",
     lambda d, n, b: (sparse_file(d / layout.backup_key("vol1", n), 3 << 29), layout.backup_key("vol1", n))[1]),
    ("manifest-nested-100k-deep-restore", "restore",
     lambda d, n, b: plant_manifest(d, n, raw=zstandard.ZstdCompressor().compress(b"[" * 100_000 + b"]" * 100_000))),
]


def entry_with(kind: str, **fields):
    """Plant a manifest with one more entry of type `kind` carrying `fields`
    its type does not declare (or declares with another type)."""
    def plant(store_dir: Path, name: str, bombs: dict) -> str:
        real = manifest.read_backup(open_store(f"vfs://{store_dir}"), "vol1", name)
        entry = {"path": "odd", "type": kind, "mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": 0, **fields}
        return plant_manifest(store_dir, name, {"entries": [*real["entries"], entry]})
    return plant


# Fields read on the entry types that declare them, planted on the others
ODD_ENTRIES = [
    ("dir-with-blocks-of-ints", "dir", {"blocks": [1]}),
    ("dir-with-blocks-a-string", "dir", {"blocks": "xyz"}),
    ("dir-with-a-numeric-target", "dir", {"target": 5}),
    ("dir-with-blocks-but-no-size", "dir", {"blocks": [[0, 10, "a" * 64]]}),
    ("fifo-with-a-string-rdev", "fifo", {"rdev": "x"}),
    ("symlink-with-blocks", "symlink", {"target": "a.bin", "blocks": [[0, 1 << 40, "a" * 64]]}),
]


@pytest.mark.parametrize("op", ["list", "verify", "restore"])
@pytest.mark.parametrize("case,kind,fields", ODD_ENTRIES, ids=[c[0] for c in ODD_ENTRIES])
def test_fields_an_entry_type_does_not_have_are_ignored(ours, tmp_path, case, kind, fields, op):
    """An entry's unknown fields are dropped when read: only a file's blocks,
    a link's target and a device's rdev are ever used."""
    store_dir, url, name = ours
    entry_with(kind, **fields)(store_dir, name, {})
    target = tmp_path / "target"
    out = run(op, f"vfs://{store_dir}" if op == "list" else url, str(target))
    assert out["ok"], out
    if op == "list":
        assert not [row for row in out["result"] if "error" in row], out
    elif op == "verify":
        assert out["result"]["ok"], out
    else:
        mode = os.lstat(target / "odd").st_mode
        assert {"dir": stat.S_ISDIR, "fifo": stat.S_ISFIFO, "symlink": stat.S_ISLNK}[kind](mode)


def skippable_frame(size: int) -> bytes:
    """A zstd skippable frame: decoders pass over it; it only adds stored bytes."""
    return (0x184D2A50).to_bytes(4, "little") + size.to_bytes(4, "little") + bytes(size)


def padded_whitespace(d: Path, n: str, b: dict) -> str:
    """A valid manifest padded to 48 MiB of JSON in a small frame, then 256 KiB
    that would raise a cap counted on the whole object past those 48 MiB."""
    text = zstandard.ZstdDecompressor().decompress((d / layout.backup_key("vol1", n)).read_bytes())
    frame = zstandard.ZstdCompressor(level=3).compress(text + b" " * (48 << 20))
    return plant_manifest(d, n, raw=frame + skippable_frame(256 << 10))


OUR_CASES += [
    ("manifest-padded-after-its-frame-list", "list", padded_whitespace),
    ("manifest-padded-after-its-frame-restore", "restore", padded_whitespace),
    ("real-manifest-then-a-skippable-frame-list", "list",
     lambda d, n, b: plant_manifest(d, n, raw=(d / layout.backup_key("vol1", n)).read_bytes() + skippable_frame(16))),
    ("manifest-then-a-second-frame-verify", "verify",
     lambda d, n, b: plant_manifest(d, n, raw=(d / layout.backup_key("vol1", n)).read_bytes() + zstandard.compress(b"{}"))),
]


def test_a_manifest_of_many_empty_files_stays_within_the_ratio(tmp_path):
    """Empty files carry no hashes, so their manifest compresses far better than
    a block map: a real one of 20k files must sit well inside MANIFEST_RATIO and read back."""
    src = tmp_path / "src"
    for d in range(20):
        (src / f"d{d:02d}").mkdir(parents=True)
        for i in range(1000):
            path = src / f"d{d:02d}" / f"file{i:05d}.txt"
            path.touch()
            os.utime(path, ns=(1_700_000_000_000_000_000,) * 2)
    result = create_backup(f"vfs://{tmp_path}/store", "vol1", SnapshotSource("s1", str(src)))
    stored = (tmp_path / "store" / layout.backup_key("vol1", result["name"])).read_bytes()
    ratio = len(zstandard.ZstdDecompressor().decompress(stored)) / len(stored)
    assert ratio < limits.MANIFEST_RATIO / 2, ratio
    doc = manifest.read_backup(open_store(f"vfs://{tmp_path}/store"), "vol1", result["name"])
    assert len(doc["entries"]) == 20_000 + 21


def stored_block_of_3gib(store_dir: Path, name: str) -> str:
    doc = manifest.read_backup(open_store(f"vfs://{store_dir}"), "vol1", name)
    digest = next(b[2] for e in doc["entries"] for b in e.get("blocks", ()))
    sparse_file(store_dir / layout.block_key(digest), 3 << 30)
    return layout.block_key(digest)


OUR_CASES += [
    ("stored-block-of-3GiB-restore", "restore", lambda d, n, b: stored_block_of_3gib(d, n)),
    ("stored-block-of-3GiB-verify", "verify", lambda d, n, b: stored_block_of_3gib(d, n)),
]


@pytest.mark.parametrize("case,op,plant", OUR_CASES, ids=[c[0] for c in OUR_CASES])
def test_hostile_object_in_our_format(ours, bombs, tmp_path, case, op, plant):
    store_dir, url, name = ours
    key = plant(store_dir, name, bombs)
    out = run(op, f"vfs://{store_dir}" if op == "list" else url, str(tmp_path / "target"))
    seen = what_the_user_sees(op, out)
    assert key in seen or key.rsplit("/", 1)[-1] in seen, f"{case}: the message does not name {key}: {seen}"
    assert "internal error" not in seen
    assert out["peak_mib"] < PEAK_MIB, f"{case}: {op} peaked at {out['peak_mib']} MiB"


S3_CASES = [
    ("stored-block-of-256MiB", "restore", "block"),
    ("manifest-declaring-1TiB", "verify", "manifest"),
    ("manifest-declaring-1TiB", "list", "manifest"),
]


@pytest.mark.parametrize("case,op,what", S3_CASES, ids=[f"{c[0]}-{c[1]}" for c in S3_CASES])
def test_hostile_object_on_s3(s3_bucket, s3_endpoint, tmp_path, case, op, what):
    """On s3:// the GET's ContentLength is checked before the body is read."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(100_000))
    dest = f"s3://{s3_bucket}@us-east-1/p"
    result = create_backup(dest, "vol1", SnapshotSource("s1", str(src)), s3_endpoint=s3_endpoint)
    store = open_store(dest, s3_endpoint=s3_endpoint)
    if what == "block":
        doc = manifest.read_backup(store, "vol1", result["name"])
        key = layout.block_key(doc["entries"][1]["blocks"][0][2])
        store.put(key, bytes(256 << 20))
    else:
        key = layout.backup_key("vol1", result["name"])
        store.put(key, frame_declaring(b'{"format":"convoy-py-backup"}', 1 << 40))
    if op == "list":  # on S3 a current index is believed without reading the manifest; a hostile store has none
        store.delete(layout.index_key("vol1"))
    out = run(op, dest if op == "list" else result["url"], str(tmp_path / "target"), s3_endpoint=s3_endpoint)
    seen = what_the_user_sees(op, out)
    assert key in seen, f"{case}: the message does not name {key}: {seen}"
    assert out["peak_mib"] < 200, f"{case}: {op} peaked at {out['peak_mib']} MiB"


# -- Convoy 0.5.2 ---------------------------------------------------------------------


@pytest.fixture
def convoy_store(tmp_path) -> Path:
    dest = tmp_path / "convoy"
    shutil.copytree(DM_FIXTURE / "convoy-objectstore", dest / "convoy-objectstore")
    return dest


def convoy_block(dest: Path) -> Path:
    cfg = json.loads((dest / backup_cfg_key("dmvol", DM_BACKUP)).read_text())
    checksum = cfg["Blocks"][0]["BlockChecksum"]
    return dest / f"{volume_dir('dmvol')}blocks/{checksum[0:2]}/{checksum[2:4]}/{checksum}.blk"


def gzip_bomb_block(dest: Path, bombs: dict) -> str:
    block = convoy_block(dest)
    block.write_bytes(bombs["gzip_1500m"])
    return block.name[: -len(".blk")]


def huge_block(dest: Path, bombs: dict) -> str:
    block = convoy_block(dest)
    sparse_file(block, 1 << 30)
    return block.name[: -len(".blk")]


def huge_cfg(dest: Path, bombs: dict) -> str:
    sparse_file(dest / backup_cfg_key("dmvol", DM_BACKUP), 1 << 30)
    return backup_cfg_key("dmvol", DM_BACKUP)


def cfg_text(text: str):
    def plant(dest: Path, bombs: dict) -> str:
        (dest / backup_cfg_key("dmvol", DM_BACKUP)).write_text(text)
        return backup_cfg_key("dmvol", DM_BACKUP)
    return plant


CONVOY_CASES = [
    ("gzip-bomb-1.5MB-verify", "verify", gzip_bomb_block),
    ("gzip-bomb-1.5MB-restore-image", "restore-image", gzip_bomb_block),
    ("block-object-of-1GiB-verify", "verify", huge_block),
    ("cfg-of-1GiB-list", "list", huge_cfg),
    ("cfg-of-1GiB-verify", "verify", huge_cfg),
    ("cfg-a-json-list-list", "list", cfg_text("[1, 2]")),
    ("cfg-wrong-types-verify", "verify", cfg_text('{"Name": 5, "VolumeName": "dmvol", "Blocks": "x"}')),
    ("cfg-negative-offset-restore-image", "restore-image",
     cfg_text('{"Name": "b", "VolumeName": "dmvol", "Blocks": [{"Offset": -1, "BlockChecksum": "' + "0" * 64 + '"}]}')),
    ("cfg-block-outside-the-volume-restore-image", "restore-image",
     cfg_text('{"Name": "b", "VolumeName": "dmvol", "Blocks": [{"Offset": 4611686018427387904, "BlockChecksum": "'
              + "0" * 64 + '"}]}')),
    ("cfg-archive-outside-the-volume-verify", "verify",
     cfg_text('{"Name": "b", "VolumeName": "dmvol", "SingleFile": {"FilePath": "convoy-store/config.json"}}')),
]


def volume_cfg_size(size: int):
    def plant(dest: Path, bombs: dict) -> str:
        key = volume_dir("dmvol") + "volume.cfg"
        (dest / key).write_text(json.dumps({**json.loads((dest / key).read_text()), "Size": size}))
        return key
    return plant


def block_beyond_any_file(dest: Path, bombs: dict) -> str:
    """A listed block at 4 EiB of a volume of unknown size: past what ext4 lets a file reach."""
    volume_cfg_size(0)(dest, bombs)
    key = backup_cfg_key("dmvol", DM_BACKUP)
    cfg = json.loads((dest / key).read_text())
    cfg["Blocks"] = [{**cfg["Blocks"][0], "Offset": 1 << 62}]
    (dest / key).write_text(json.dumps(cfg))
    return key


CONVOY_CASES += [
    ("volume-cfg-size-int64-max-restore-image", "restore-image", volume_cfg_size((1 << 63) - 1)),
    ("block-at-4EiB-restore-image", "restore-image", block_beyond_any_file),
]


@pytest.mark.parametrize("case,op,plant", CONVOY_CASES, ids=[c[0] for c in CONVOY_CASES])
def test_hostile_object_in_convoy_format(convoy_store, bombs, tmp_path, case, op, plant):
    named = plant(convoy_store, bombs)
    url = f"vfs://{convoy_store}" if op == "list" else f"vfs://{convoy_store}?backup={DM_BACKUP}&volume=dmvol"
    out = run(op, url, str(tmp_path / "image"))
    seen = what_the_user_sees(op, out)
    assert named in seen, f"{case}: the message does not name {named}: {seen}"
    assert "internal error" not in seen
    assert out["peak_mib"] < PEAK_MIB, f"{case}: {op} peaked at {out['peak_mib']} MiB"


def test_fixture_blocks_still_read_with_the_bounded_gzip_reader(convoy_store):
    """Every real Convoy block fits the bounds (they are Convoy's own 2 MiB blocks)."""
    out = run("verify", f"vfs://{convoy_store}?backup={DM_BACKUP}&volume=dmvol")
    assert out["ok"] and out["result"]["ok"], out
    for blk in convoy_store.rglob("*.blk"):
        assert len(gzip.decompress(blk.read_bytes())) <= 2 << 20


VERSIONS = [
    (0, "damaged"),
    (-1, "damaged"),
    ("1", "damaged"),
    (1.5, "damaged"),
    (None, "damaged"),
    (2, "upgrade Convoy"),
]


@pytest.mark.parametrize("version,says", VERSIONS, ids=[repr(v[0]) for v in VERSIONS])
def test_a_manifest_version_says_upgrade_only_when_it_is_newer(ours, version, says):
    """Only a newer version is fixed by upgrading; anything else is damage,
    and the message says what to do about it."""
    store_dir, _url, name = ours
    key = plant_manifest(store_dir, name, {"version": version})
    seen = what_the_user_sees("list", run("list", f"vfs://{store_dir}"))
    assert key in seen and says in seen, seen
    if says == "damaged":
        assert "upgrade" not in seen and "restore this object from a copy or delete the backup" in seen, seen


def test_an_expired_lock_file_carrying_a_live_locks_id_deletes_only_itself(tmp_path):
    """Clean-up deletes the lock object it read: a crafted (or copied) expired
    lock that names a live lock's id must not remove that live lock."""
    store = open_store(f"vfs://{tmp_path}/store")
    manifest.ensure_config(store)
    with StoreLock(store, "shared", "backup of vol1") as live:
        forged = dict(live.info.__dict__, expires_at=1.0)
        store.put(layout.lock_key("forged"), json.dumps(forged).encode())
        assert remove_expired_locks(store) == 1
        assert sorted(store.list(layout.LOCKS)) == [live.key]


def _file_entry(path: str, size: int, blocks: list) -> dict:
    return {"path": path, "type": "file", "mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": 0, "size": size, "blocks": blocks}


def test_verify_checks_a_digest_at_each_length_it_is_used_with(ours, tmp_path):
    """The same digest listed with another length elsewhere cannot decode to
    both: verify must not call intact what restore then fails on."""
    store_dir, url, name = ours
    doc = manifest.read_backup(open_store(f"vfs://{store_dir}"), "vol1", name)
    _offset, length, digest = next(b for e in doc["entries"] for b in e.get("blocks", ()))
    plant_manifest(store_dir, name, {"entries": [*doc["entries"], _file_entry("short", length - 1, [[0, length - 1, digest]])]})
    seen = what_the_user_sees("verify", run("verify", url))
    assert "1 corrupted block(s)" in seen and "short" in seen, seen
    restore = run("restore", url, str(tmp_path / "target"))
    assert not restore["ok"] and digest in restore["message"], restore


def test_verify_lists_each_file_of_a_block_once(ours):
    """A file of a thousand copies of one block names the file once, not a thousand times."""
    store_dir, url, name = ours
    doc = manifest.read_backup(open_store(f"vfs://{store_dir}"), "vol1", name)
    _offset, length, digest = next(b for e in doc["entries"] for b in e.get("blocks", ()))
    copies = [[i * length, length, digest] for i in range(1000)]
    plant_manifest(store_dir, name, {"entries": [*doc["entries"], _file_entry("zeros", 1000 * length, copies)]})
    (store_dir / layout.block_key(digest)).unlink()
    out = run("verify", url)
    [missing] = out["result"]["missing"]
    assert sorted(missing["files"]) == sorted(
        {e["path"] for e in doc["entries"] if any(b[2] == digest for b in e.get("blocks", ()))} | {"zeros"}
    ), missing


def test_an_image_backup_larger_than_any_file_is_refused_naming_it(ours, tmp_path):
    """An image manifest may claim any size up to 2**63-1; ext4 refuses such a
    file (EFBIG), which must read as a refusal, not an internal error."""
    store_dir, url, name = ours
    plant_manifest(store_dir, name, {"source": "image", "entries": [_file_entry("image", (1 << 63) - 1, [])]})
    out = run("restore-image", url, str(tmp_path / "image"))
    assert not out["ok"] and out["kind"] != "internal", out
    assert name in out["message"] and "more than the file system" in out["message"], out
