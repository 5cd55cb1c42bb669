"""Dependencies point one way: services -> drivers -> file-system helpers; the engine loads only for a backup."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.daemon_harness import REPO

ENGINE = ("app.backup.engine", "blake3", "zstandard", "cryptography")


def modules_after(imports: str) -> set[str]:
    code = f"import sys\n{imports}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "imports",
    [
        "import app.storage.vfs, app.storage.image, app.storage.block",
        "import app.fs.filesystems, app.fs.loop, app.fs.image_tree, app.fs.clone",
        "import app.daemon, app.service, app.backup_service, app.server",
        "import app.cli.main",
        "import app.cli.quick",
    ],
)
def test_the_backup_engine_is_not_loaded_by(imports):
    loaded = modules_after(imports)
    assert not loaded & set(ENGINE), f"{imports} loads {sorted(loaded & set(ENGINE))}"


def test_drivers_and_file_system_helpers_never_import_services_or_the_backup_package():
    every_driver = "from app.storage import registry\nfor name in registry.DRIVERS: registry.driver_class(name)"
    loaded = modules_after(f"{every_driver}\nimport app.fs.image_tree")
    upward = {m for m in loaded if m.startswith(("app.service", "app.backup", "app.snapshot_service", "app.server"))}
    assert upward == set(), upward


def test_the_registry_names_each_driver_as_the_driver_names_itself():
    from app.storage import registry

    assert {name: registry.driver_class(name).name for name in registry.DRIVERS} == {name: name for name in registry.DRIVERS}


def test_a_daemon_loads_only_the_back_ends_it_uses():
    loaded = modules_after("from app.storage import registry\nregistry.driver_class('vfs'); registry.driver_class('image')")
    assert not loaded & {"app.storage.ebs", "app.storage.digitalocean", "app.storage.devicemapper"}
