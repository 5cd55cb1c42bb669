"""The suite every back-end passes (tests/drivers/test_every_backend.py), on the devicemapper back-end: a real
dm-thin pool on two loop files, in the guest's kernel."""

from __future__ import annotations

import pytest

from tests.drivers.backends import DEVICEMAPPER
from tests.drivers.conftest import host, make_host  # noqa: F401 - fixtures of the suite
from tests.drivers.test_every_backend import (  # noqa: F401 - the suite's tests, collected here
    test_create_mount_twice_unmount_and_remount_keeps_the_data,
    test_delete,
    test_existing_storage_is_adopted_with_its_data,
    test_kill_9_and_reboot_leave_each_mount_and_attachment_once,
    test_snapshot_backup_restore_and_incremental,
)


@pytest.fixture
def backend():
    return DEVICEMAPPER
