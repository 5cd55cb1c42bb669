"""Mount references per (volume, ID), as Docker sends them."""

import pytest

from tests.daemon_harness import mounted_points, mountinfo_lines

pytestmark = pytest.mark.needs_root


def refs(daemon, name):
    return daemon.docker_ok("Get", {"Name": name})["Volume"]["Status"]["mount_refs"]


def test_two_ids_share_one_mount_until_the_last_goes(daemon):
    daemon.docker_ok("Create", {"Name": "shared"})
    first = daemon.docker_ok("Mount", {"Name": "shared", "ID": "container-a"})["Mountpoint"]
    second = daemon.docker_ok("Mount", {"Name": "shared", "ID": "container-b"})["Mountpoint"]
    assert first == second
    assert sum(1 for p in mountinfo_lines() if p.split(" ")[4] == first) == 1
    assert refs(daemon, "shared") == 2

    daemon.docker_ok("Unmount", {"Name": "shared", "ID": "container-a"})
    assert first in mounted_points(), "the other container still uses it"
    daemon.docker_ok("Unmount", {"Name": "shared", "ID": "container-b"})
    assert first not in mounted_points()
    assert refs(daemon, "shared") == 0


def test_the_same_id_twice_counts_twice(daemon):
    daemon.docker_ok("Create", {"Name": "twice"})
    mountpoint = daemon.docker_ok("Mount", {"Name": "twice", "ID": "same"})["Mountpoint"]
    daemon.docker_ok("Mount", {"Name": "twice", "ID": "same"})
    assert refs(daemon, "twice") == 2
    daemon.docker_ok("Unmount", {"Name": "twice", "ID": "same"})
    assert mountpoint in mounted_points()
    daemon.docker_ok("Unmount", {"Name": "twice", "ID": "same"})
    assert mountpoint not in mounted_points()


def test_unmount_with_an_unknown_id_is_harmless(daemon):
    daemon.docker_ok("Create", {"Name": "stray"})
    mountpoint = daemon.docker_ok("Mount", {"Name": "stray", "ID": "real"})["Mountpoint"]
    daemon.docker_ok("Unmount", {"Name": "stray", "ID": "never-mounted"})
    assert mountpoint in mounted_points()
    assert refs(daemon, "stray") == 1
    daemon.docker_ok("Unmount", {"Name": "stray", "ID": "real"})
    daemon.docker_ok("Unmount", {"Name": "stray", "ID": "real"})  # a retried unmount is harmless
    assert mountpoint not in mounted_points()
    daemon.docker_ok("Unmount", {"Name": "no-such-volume", "ID": "x"})


def test_references_survive_a_clean_restart(daemon):
    daemon.docker_ok("Create", {"Name": "persist"})
    mountpoint = daemon.docker_ok("Mount", {"Name": "persist", "ID": "a"})["Mountpoint"]
    daemon.docker_ok("Mount", {"Name": "persist", "ID": "b"})
    daemon.stop()
    daemon.start()
    assert refs(daemon, "persist") == 2
    daemon.docker_ok("Unmount", {"Name": "persist", "ID": "a"})
    assert mountpoint in mounted_points()
    daemon.docker_ok("Unmount", {"Name": "persist", "ID": "b"})
    assert mountpoint not in mounted_points()
