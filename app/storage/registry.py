"""Which back-ends exist, by the name users give with `--drivers`.

A back-end's module loads when a daemon uses it: the cloud and
device-mapper ones bring their API clients and tools along, which a
daemon on vfs and image would only pay for at every start.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from app.errors import InvalidInput
from app.storage.driver import StorageDriver

# name -> (module, class); each class's `name` is its key here (tests/core/test_layers.py checks)
DRIVERS: dict[str, tuple[str, str]] = {
    "vfs": ("app.storage.vfs", "VfsDriver"),
    "image": ("app.storage.image", "ImageDriver"),
    "ebs": ("app.storage.ebs", "EbsDriver"),
    "digitalocean": ("app.storage.digitalocean", "DoDriver"),
    "devicemapper": ("app.storage.devicemapper", "DmDriver"),
}


def driver_class(name: str) -> type[StorageDriver]:
    try:
        module, class_name = DRIVERS[name]
    except KeyError:
        raise InvalidInput(f"unknown driver {name!r}: available are {', '.join(sorted(DRIVERS))}") from None
    found: type[StorageDriver] = getattr(import_module(module), class_name)
    return found


def build_driver(name: str, options: dict[str, str], state_dir: Path) -> StorageDriver:
    return driver_class(name)(options, state_dir)


def option_prefix(name: str) -> str:
    """The prefix of driver `name`'s `--driver-opts` keys (without its dot): its own, or its name."""
    return (driver_class(name).option_prefix if name in DRIVERS else None) or name
