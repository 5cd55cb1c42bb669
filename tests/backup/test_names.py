"""One name rule for volumes, snapshots and backups, wherever a name is read.

`app/backup/urls.check_name` refused any '..' while `app/names.check_name`
(volumes, snapshots) allowed it: `a..b` could be created but never backed
up. Both now use `app.names.check_name`; a name never holds '/' and starts
with a letter or digit, so a '..' inside one is harmless, and every path and
object key made from a name keeps it one component.
"""

from __future__ import annotations

import json

import pytest

from app.backup import layout, legacy_convoy
from app.backup.objectstore.vfs import _check_key
from app.backup.urls import parse_backup_url
from app.errors import InvalidInput
from app.names import check_name

NAMES = [
    "a..b",
    "xy..",
    "ab",
    "v.1",
    "a_b-c.d",
    "x" * 200,
    "a.",
    "0..0..0",
    "..",
    ".a",
    "-a",
    "a/b",
    "a",
    "x" * 201,
    "a b",
    "a\x00b",
]  # no "\n": urlsplit drops it from a URL


@pytest.mark.parametrize("name", NAMES, ids=[repr(n)[:24] for n in NAMES])
def test_volumes_and_backup_urls_follow_the_same_rule(name):
    def accepted(check) -> bool:
        try:
            check()
            return True
        except InvalidInput:
            return False

    for kind in ("volume", "backup"):
        backup, volume = (name, "v1") if kind == "backup" else ("b1", name)
        as_name = accepted(lambda kind=kind: check_name(kind, name))
        in_url = accepted(lambda backup=backup, volume=volume: parse_backup_url(f"vfs:///s?backup={backup}&volume={volume}"))
        assert as_name == in_url, f"{kind} {name!r}: the name rule says {as_name}, a backup URL says {in_url}"


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("a..b", "xy..", "a.", "0..0..0", "ab", "x" * 200)])
def test_every_key_made_from_a_valid_name_is_a_safe_key(name):
    check_name("volume", name)
    keys = [
        layout.volume_key(name),
        layout.backup_key(name, name),
        legacy_convoy.backup_cfg_key(name, name),
        legacy_convoy.volume_dir(name) + "volume.cfg",
    ]
    for key in keys:
        _check_key(key)  # no '', '.' or '..' component
        assert f"/{name}/" in key or key.endswith(f"/{name}{layout.MANIFEST_SUFFIX}") or f"backup_{name}.cfg" in key


@pytest.mark.needs_root
@pytest.mark.parametrize("name", ["a..b", "xy.."])
def test_a_name_with_dots_backs_up_and_restores_through_the_cli(daemon, tmp_path, name):
    store = f"vfs://{tmp_path / 'store'}"
    daemon.cli("create", name, check=True)
    (daemon.root / "vfs" / name / "data.txt").write_text(f"content of {name}\n")
    snapshot = daemon.cli("snapshot", "create", name, check=True).stdout.strip()
    url = daemon.cli("backup", "create", snapshot, "--dest", store, check=True).stdout.strip()
    assert url.endswith(f"&volume={name}")
    listed = json.loads(daemon.cli("backup", "list", store, "--volume-name", name, "--json", check=True).stdout)
    assert [b["url"] for b in listed] == [url]
    daemon.cli("create", "restored", "--backup", url, check=True)
    assert (daemon.root / "vfs" / "restored" / "data.txt").read_text() == f"content of {name}\n"
    assert "Traceback" not in daemon.log_text()


@pytest.mark.parametrize("name", ["vol\n", "a..b\n", "\nvol"])
def test_a_name_with_a_newline_is_refused(name):
    """Python's `$` matches before a final newline; Docker's (Go's) rule does not."""
    with pytest.raises(InvalidInput, match="is not valid"):
        check_name("volume", name)
