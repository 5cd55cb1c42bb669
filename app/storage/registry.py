"""Which back-ends exist, by the name users give with `--drivers`."""

from __future__ import annotations

from pathlib import Path

from app.errors import InvalidInput
from app.storage.devicemapper import DmDriver
from app.storage.digitalocean import DoDriver
from app.storage.driver import StorageDriver
from app.storage.ebs import EbsDriver
from app.storage.image import ImageDriver
from app.storage.vfs import VfsDriver

DRIVERS: dict[str, type[StorageDriver]] = {
    driver.name: driver for driver in (VfsDriver, ImageDriver, EbsDriver, DoDriver, DmDriver)
}


def build_driver(name: str, options: dict[str, str], state_dir: Path) -> StorageDriver:
    try:
        driver_class = DRIVERS[name]
    except KeyError:
        raise InvalidInput(f"unknown driver {name!r}: available are {', '.join(sorted(DRIVERS))}") from None
    return driver_class(options, state_dir)


def option_prefix(name: str) -> str:
    """The prefix of driver `name`'s `--driver-opts` keys (without its dot): its own, or its name."""
    driver_class = DRIVERS.get(name)
    return (driver_class.option_prefix if driver_class else None) or name
