"""What a restore may do to the host: nothing.

A store is untrusted input. Each case below is a crafted backup, in Convoy
0.5.2's format (a tar.gz) or ours (a manifest), that tries to reach a path
outside the restore target: absolute names, `..`, hard links out, symlinks
walked through or placed over directories.
Every one must fail with an error that names the offending member, and a
host "canary" (a directory and a file beside the target) must keep its mode,
mtime and content, with nothing new written anywhere outside the target.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from app.backup import blocks, layout, manifest, restore_backup, verify_backup
from app.backup.objectstore import open_store
from app.errors import ConvoyError, Damaged

CANARY_MODE = 0o751
CANARY_MTIME = 1_000_000_000
SECRET = b"host secret\n"
PWNED = b"pwned\n"


# -- the host beside the target ---------------------------------------------------

def make_host(base: Path) -> Path:
    """`base/canary` (a directory) holding `secret`, with known modes and mtimes."""
    host = base / "canary"
    host.mkdir()
    (host / "secret").write_bytes(SECRET)
    (host / "secret").chmod(0o640)
    host.chmod(CANARY_MODE)
    for path in (host / "secret", host):
        os.utime(path, (CANARY_MTIME, CANARY_MTIME))
    return host


def host_state(base: Path, skip: tuple[Path, ...]) -> dict[str, tuple]:
    """Type, mode, owner, mtime, content and link count of everything under
    `base` except the `skip` subtrees (the target and the store)."""
    state = {}
    skipped = {str(p) for p in skip}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
        for name in [".", *dirnames, *filenames]:
            path = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(path)
            content = Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else None
            state[path] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink, content)
    return state


def names_entry(message: str, path: str, index: int | None = None) -> bool:
    """The message names the entry: by its path (quoted), or by its place in a
    manifest's list of entries as the schema layer reports it (`entries.3...`)."""
    import re

    return repr(path) in message or (index is not None and re.search(rf"\bentries\.{index}\b", message) is not None)


def assert_restore_refused(url: str, target: Path, base: Path, store_dir: Path, member: str, index: int | None = None) -> str:
    """The restore fails naming `member`, and nothing outside `target` changed."""
    target.mkdir()
    before = host_state(base, (target, store_dir))
    with pytest.raises(Damaged) as err:  # a backup no Convoy writes, whoever wrote it
        restore_backup(url, str(target))
    assert names_entry(str(err.value), member, index), f"the error does not name the member {member!r}: {err.value}"
    assert host_state(base, (target, store_dir)) == before
    host = base / "canary"
    assert stat.S_IMODE(host.stat().st_mode) == CANARY_MODE
    assert host.stat().st_mtime == CANARY_MTIME
    assert (host / "secret").read_bytes() == SECRET
    assert (host / "secret").stat().st_nlink == 1
    return str(err.value)


# -- Convoy 0.5.2 archives ------------------------------------------------------------

def t_dir(name: str, mode: int = 0o777) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
    return info


def t_file(name: str, data: bytes = PWNED, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    return info, data


def t_link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, target, 0o777
    return info


def t_special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.devmajor, info.devminor = kind, 0o666, 1, 3  # /dev/null's numbers
    return info


def t_device(name: str, major: int, minor: int) -> tarfile.TarInfo:
    info = t_special(name, tarfile.CHRTYPE)
    info.devmajor, info.devminor = major, minor  # GNU tar writes numbers past 8 octal digits in base 256
    return info


def convoy_backup(dest: Path, members: list) -> str:
    """A Convoy 0.5.2 VFS backup of volume `hostile` whose archive holds `members`; its URL."""
    vdir = "convoy-objectstore/volumes/ho/st/hostile"
    bak = f"{vdir}/BackupFiles/backup-1.bak"
    (dest / vdir / "BackupFiles").mkdir(parents=True)
    (dest / vdir / "backups").mkdir()
    with tarfile.open(dest / bak, "w:gz", format=tarfile.GNU_FORMAT) as archive:  # as GNU tar wrote it
        archive.addfile(t_dir(".", 0o755))
        for member in members:
            info, data = member if isinstance(member, tuple) else (member, None)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    cfg = {
        "Name": "backup-1", "Driver": "", "VolumeName": "hostile", "SnapshotName": "s",
        "SnapshotCreatedAt": "", "CreatedTime": "", "SingleFile": {"FilePath": bak},
    }
    (dest / vdir / "backups" / "backup_backup-1.cfg").write_text(json.dumps(cfg))
    (dest / vdir / "volume.cfg").write_text(json.dumps({"Name": "hostile", "Driver": "vfs", "Size": 0}))
    return f"vfs://{dest}?backup=backup-1\\u0026volume=hostile"


# Each case: (members, the member the error must name). `{host}` is the
# canary directory's absolute path, `{rel}` the same path relative to the target.
CONVOY_CASES = {
    "absolute directory": ([t_dir("{host}")], "{host}"),
    "absolute file": ([t_file("{host}/secret")], "{host}/secret"),
    "dotdot directory": ([t_dir("{rel}")], "{rel}"),
    "dotdot file": ([t_file("{rel}/secret")], "{rel}/secret"),
    "dotdot inside a name": ([t_dir("a"), t_file("a/../../canary/secret")], "a/../../canary/secret"),
    "hard link to an absolute path": ([t_link("hl", "{host}/secret", tarfile.LNKTYPE)], "hl"),
    "hard link out through dotdot": ([t_link("hl", "{rel}/secret", tarfile.LNKTYPE)], "hl"),
    "hard link to a symlink out": (
        [t_link("s", "{host}/secret", tarfile.SYMTYPE), t_link("hl", "s", tarfile.LNKTYPE)],
        "hl",
    ),
    "file under a symlink it made": (
        [t_link("esc", "{host}", tarfile.SYMTYPE), t_file("esc/secret")],
        "esc/secret",
    ),
    "directory over a symlink it made": (
        [t_link("esc", "{host}", tarfile.SYMTYPE), t_dir("esc")],
        "esc",
    ),
    "directory under a symlink it made": (
        [t_link("esc", "{host}", tarfile.SYMTYPE), t_dir("esc/sub")],
        "esc/sub",
    ),
    "symlink over a directory": (
        [t_dir("d"), t_link("d", "{host}", tarfile.SYMTYPE), t_file("d/secret")],
        "d",
    ),
    "file over a symlink": (
        [t_link("f", "{host}/secret", tarfile.SYMTYPE), t_file("f")],
        "f",
    ),
}


CONVOY_CASES.update({
    "device major of 2**40": ([t_device("dev", 1 << 40, 3)], "dev"),
    "device minor of 2**32": ([t_device("dev", 1, 1 << 32)], "dev"),
    "device major of 2**31": ([t_device("dev", 1 << 31, 0)], "dev"),
    "device minor negative": ([t_device("dev", 1, -5)], "dev"),
})


def _fill(value: str, base: Path, target: Path) -> str:
    return value.format(host=base / "canary", rel=os.path.relpath(base / "canary", target))


def _instantiate(members: list, base: Path, target: Path) -> list:
    out = []
    for member in members:
        info, data = member if isinstance(member, tuple) else (member, None)
        copy = info.replace(name=_fill(info.name, base, target), linkname=_fill(info.linkname, base, target))
        out.append((copy, data) if data is not None else copy)
    return out


@pytest.mark.parametrize("case", list(CONVOY_CASES), ids=list(CONVOY_CASES))
def test_hostile_convoy_archive_fails_and_leaves_the_host_alone(tmp_path, case):
    members, named = CONVOY_CASES[case]
    make_host(tmp_path)
    target = tmp_path / "target"
    store = tmp_path / "store"
    url = convoy_backup(store, _instantiate(members, tmp_path, target))
    assert_restore_refused(url, target, tmp_path, store, _fill(named, tmp_path, target))
    report = verify_backup(url)  # verify checks members as a restore would
    assert not report["ok"] and names_entry(report["message"], _fill(named, tmp_path, target)), report


def test_a_plain_convoy_archive_still_restores_with_its_metadata(tmp_path):
    """The same builder with harmless members restores, modes and mtimes kept."""
    store = tmp_path / "store"
    hl_target = "d/f"
    url = convoy_backup(store, [
        t_dir("d", 0o750),
        t_file("d/f", b"data\n", 0o600),
        t_link("d/l", "/etc/passwd", tarfile.SYMTYPE),  # absolute symlinks are data, never followed
        t_link("hl", hl_target, tarfile.LNKTYPE),
    ])
    target = tmp_path / "target"
    restore_backup(url, str(target))
    assert stat.S_IMODE((target / "d").stat().st_mode) == 0o750
    assert (target / "d").stat().st_mtime == 0
    assert (target / "d" / "f").read_bytes() == b"data\n"
    assert os.readlink(target / "d" / "l") == "/etc/passwd"
    assert os.path.samefile(target / "hl", target / "d" / "f")


def test_device_nodes_and_fifos_in_a_convoy_archive_are_restored_as_data(tmp_path):
    """As in our format: a container's data may hold them; the 0700 directories
    around volumes keep host users from them (docs/security.md)."""
    store = tmp_path / "store"
    url = convoy_backup(store, [
        t_special("null", tarfile.CHRTYPE), t_special("disk", tarfile.BLKTYPE), t_special("pipe", tarfile.FIFOTYPE),
    ])
    target = tmp_path / "target"
    restore_backup(url, str(target))
    null, disk, pipe = (os.lstat(target / n) for n in ("null", "disk", "pipe"))
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(disk.st_mode) and disk.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(pipe.st_mode)
    assert {stat.S_IMODE(s.st_mode) for s in (null, disk, pipe)} == {0o666}
    assert verify_backup(url)["ok"]


# -- our format -----------------------------------------------------------------------------

BASE_META = {"mode": 0o777, "uid": 0, "gid": 0, "mtime_ns": 0}


def e_dir(path: str) -> dict:
    return {"path": path, "type": "dir", **BASE_META}


def e_file(path: str, data: bytes = PWNED, **extra) -> dict:
    entry = {"path": path, "type": "file", "size": len(data), "blocks": [[0, len(data), blocks.digest(data)]], **BASE_META}
    return {**entry, **extra}


def e_link(path: str, target: str, kind: str) -> dict:
    return {"path": path, "type": kind, "target": target, **BASE_META}


def our_backup(dest: Path, entries: list[dict], name: str = "evil") -> str:
    store = open_store(f"vfs://{dest}")
    manifest.ensure_config(store)
    store.put(layout.block_key(blocks.digest(PWNED)), blocks.encode(PWNED))
    doc = {
        "format": manifest.BACKUP_FORMAT, "version": 1, "name": name, "volume": "hostile",
        "snapshot": "s", "created_at": "x", "block_size": 1 << 20,
        "entries": [e_dir("."), *entries],
    }
    manifest.write_backup(store, doc)
    return f"vfs://{dest}?backup={name}&volume=hostile"


OUR_CASES = {
    "absolute directory": ([e_dir("{host}")], "{host}"),
    "absolute file": ([e_file("{host}/secret")], "{host}/secret"),
    "dotdot directory": ([e_dir("../x")], "../x"),
    "dotdot file": ([e_file("{rel}/secret")], "{rel}/secret"),
    "dotdot inside a name": ([e_dir("a"), e_file("a/../../canary/secret")], "a/../../canary/secret"),
    "empty component": ([e_dir("a"), e_file("a//f")], "a//f"),
    "dot component": ([e_dir("a"), e_file("a/./f")], "a/./f"),
    "hard link to an absolute path": ([e_link("hl", "{host}/secret", "hardlink")], "hl"),
    "hard link out through dotdot": ([e_link("hl", "{rel}/secret", "hardlink")], "hl"),
    "hard link to a symlink out": (
        [e_link("s", "{host}/secret", "symlink"), e_link("hl", "s", "hardlink")],
        "hl",
    ),
    "hard link to a directory": ([e_dir("d"), e_link("hl", "d", "hardlink")], "hl"),
    "file under a symlink it made": (
        [e_link("esc", "{host}", "symlink"), e_file("esc/secret")],
        "esc/secret",
    ),
    "directory under a symlink it made": (
        [e_link("esc", "{host}", "symlink"), e_dir("esc/sub")],
        "esc/sub",
    ),
    "directory over a symlink it made": ([e_link("esc", "{host}", "symlink"), e_dir("esc")], "esc"),
    "symlink over a directory": (
        [e_dir("d"), e_link("d", "{host}", "symlink"), e_file("d/secret")],
        "d",
    ),
    "file over a symlink": ([e_link("f", "{host}/secret", "symlink"), e_file("f")], "f"),
    "the root as a symlink": ([e_link(".", "{host}", "symlink")], "."),
    "the root as a file": ([e_file(".")], "."),
    "a file listed twice": ([e_file("f"), e_file("f")], "f"),
    "unknown type": ([{"path": "x", "type": "socket", **BASE_META}], "x"),
}


def _fill_entries(entries: list[dict], base: Path, target: Path) -> list[dict]:
    return [{k: _fill(v, base, target) if isinstance(v, str) else v for k, v in e.items()} for e in entries]


@pytest.mark.parametrize("case", list(OUR_CASES), ids=list(OUR_CASES))
def test_hostile_manifest_fails_and_leaves_the_host_alone(tmp_path, case):
    entries, named = OUR_CASES[case]
    make_host(tmp_path)
    target = tmp_path / "target"
    store = tmp_path / "store"
    url = our_backup(store, _fill_entries(entries, tmp_path, target))
    named = _fill(named, tmp_path, target)
    index = max(i for i, e in enumerate(entries, start=1) if _fill(e["path"], tmp_path, target) == named)
    message = assert_restore_refused(url, target, tmp_path, store, named, index)
    assert "internal" not in message
    # verify never calls intact what a restore refuses
    try:
        report = verify_backup(url)
    except Damaged as e:
        assert names_entry(str(e), named, index), e
    else:
        assert not report["ok"] and names_entry(report["message"], named, index), report


# -- through the daemon: `convoy create NAME --backup URL` ---------------------------------

def listed_volumes(daemon) -> list[str]:
    result = daemon.cli("list", "--json")
    assert result.returncode == 0, result.stderr
    return [v["name"] for v in json.loads(result.stdout)]


def assert_restore_left_nothing(daemon, name: str) -> None:
    """A failed restore leaves no volume, no mount and no traceback behind."""
    from tests.daemon_harness import mounted_points

    assert name not in listed_volumes(daemon)
    assert not [p for p in mounted_points() if p.startswith(str(daemon.base) + "/")]
    assert not (daemon.root / "vfs" / name).exists()
    assert "Traceback" not in daemon.log_text()


DAEMON_CASES = {
    "convoy archive, absolute directory": (lambda store, host: convoy_backup(store, [t_dir(str(host))]), "{host}"),
    "convoy archive, hard link out": (
        lambda store, host: convoy_backup(store, [t_link("hl", f"{host}/secret", tarfile.LNKTYPE)]), "hl"
    ),
    "our manifest, file under a symlink": (
        lambda store, host: our_backup(store, [e_link("esc", str(host), "symlink"), e_file("esc/secret")]), "esc/secret"
    ),
    "our manifest, absolute directory": (lambda store, host: our_backup(store, [e_dir(str(host))]), "{host}"),
}


@pytest.mark.needs_root
@pytest.mark.parametrize("case", list(DAEMON_CASES), ids=list(DAEMON_CASES))
def test_hostile_backup_through_the_cli_fails_and_leaves_the_host_alone(daemon, tmp_path, case):
    build, named = DAEMON_CASES[case]
    host = make_host(tmp_path)
    url = build(tmp_path / "store", host).replace("\\u0026", "&")
    before = host_state(tmp_path, (daemon.base, tmp_path / "store"))
    result = daemon.cli("create", "victim", "--backup", url)
    assert result.returncode != 0
    assert names_entry(result.stderr, named.format(host=host)), result.stderr
    assert "internal" not in result.stderr
    assert host_state(tmp_path, (daemon.base, tmp_path / "store")) == before
    assert_restore_left_nothing(daemon, "victim")


# -- Convoy archives: memory and sparse files ----------------------------------------------------

def test_an_oversized_header_record_fails_in_bounded_memory(tmp_path):
    """tarfile reads a GNU long-name record whole: one declaring 1 GiB (of
    zeros, a 1 MiB download) must fail before it is read, not take 1 GiB."""
    import gzip
    import subprocess
    import sys

    store = tmp_path / "store"
    url = convoy_backup(store, [])
    bak = next(store.rglob("*.bak"))
    record = tarfile.TarInfo("././@LongLink")
    record.type, record.size = tarfile.GNUTYPE_LONGNAME, 1 << 30
    with gzip.open(bak, "wb", compresslevel=1) as out:
        out.write(record.tobuf(format=tarfile.GNU_FORMAT))
        zeros = bytes(1 << 20)
        for _ in range(1 << 10):
            out.write(zeros)
        out.write(t_file("x")[0].tobuf(format=tarfile.GNU_FORMAT) + PWNED.ljust(512, b"\0") + bytes(1024))
    probe = (
        "import sys\n"
        "from app.backup import restore_backup, verify_backup\n"
        "from app.errors import ConvoyError\n"
        "try:\n"
        "    restore_backup(sys.argv[1], sys.argv[2])\n"
        "    print('restored')\n"
        "except ConvoyError as e:\n"
        "    print(e)\n"
        "try:\n"
        "    print(verify_backup(sys.argv[1])['message'])\n"
        "except ConvoyError as e:\n"
        "    print(e)\n"
        # VmHWM: this process's own peak (ru_maxrss would include the parent's, kept across fork and exec)
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, url, str(tmp_path / "target")],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    restored, verified, peak = result.stdout.splitlines()
    peak_mib = int(peak)
    for message in (restored, verified):
        assert "damaged" in message and "header record" in message, message
    assert peak_mib < 300, f"the restore took {peak_mib} MiB"


def test_a_sparse_member_is_refused(tmp_path):
    """Convoy archived with a plain `tar cf`, which never writes sparse members;
    their maps are read as long as the archive says, so they are refused."""
    store = tmp_path / "store"
    url = convoy_backup(store, [])
    bak = next(store.rglob("*.bak"))
    info = tarfile.TarInfo("sparse")
    info.size = 4
    info.pax_headers = {  # a small declared size: a regression must not fill the disk
        "GNU.sparse.size": str(64 << 20), "GNU.sparse.numblocks": "1", "GNU.sparse.offset": "0", "GNU.sparse.numbytes": "4",
    }
    with tarfile.open(bak, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(info, io.BytesIO(b"data"))
    with pytest.raises(ConvoyError) as err:
        restore_backup(url, str(tmp_path / "target"))
    assert "sparse" in str(err.value) and "'sparse'" in str(err.value)


def test_runs_of_zeros_in_a_convoy_archive_stay_holes_and_long_names_work(tmp_path):
    store = tmp_path / "store"
    zeros = bytes(8 << 20)
    long_dir = "d" * 150
    long_name = f"{long_dir}/{'n' * 200}"
    url = convoy_backup(store, [t_file("zeros", zeros), t_dir(long_dir, 0o755), t_file(long_name, b"deep\n")])
    target = tmp_path / "target"
    restore_backup(url, str(target))
    assert (target / "zeros").read_bytes() == zeros
    assert (target / "zeros").stat().st_blocks * 512 < len(zeros) // 8
    assert (target / long_name).read_bytes() == b"deep\n"


@pytest.mark.parametrize("op", ["restore", "verify"])
def test_a_convoy_archive_is_read_without_keeping_every_member(tmp_path, monkeypatch, op):
    """TarFile keeps each TarInfo it reads in `members`, even as a stream: an
    archive of millions of members would fill memory. The reader forgets them."""
    url = convoy_backup(tmp_path / "store", [t_file(f"f{i}", b"x") for i in range(2000)])
    kept = []
    real_next = tarfile.TarFile.next

    def next_member(self):
        kept.append(len(self.members))
        return real_next(self)

    monkeypatch.setattr(tarfile.TarFile, "next", next_member)
    if op == "restore":
        restore_backup(url, str(tmp_path / "target"))
        assert (tmp_path / "target" / "f1999").read_bytes() == b"x"
    else:
        assert verify_backup(url)["ok"]
    assert len(kept) > 2000 and max(kept) <= 2, max(kept)
