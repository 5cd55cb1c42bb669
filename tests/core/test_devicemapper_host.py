"""The devicemapper back-end's parts that need no device-mapper: options, the tools' output, the id ledger.

The outputs below are in the formats of Debian bookworm's dmsetup 1.02 and
thin-provisioning-tools 0.9.0 (CAPTURED_* verbatim from thin_dump and
thin_delta run on metadata made with thin_restore); the pool itself is tested
in the guest (tests/guest/inside).
"""

from __future__ import annotations

import pytest

from app.errors import Damaged, InvalidInput, Unavailable
from app.fs import dmsetup, thin_tools
from app.storage import dm_options
from app.storage.dm_ledger import CREATING, READY, Entry, Ledger

# -- options -----------------------------------------------------------------------------------


def test_convoy_defaults():
    options = dm_options.parse({"dm.datadev": "/dev/sdb", "dm.metadatadev": "/dev/sdc"})
    assert (options.pool_name, options.block_sectors, options.block_bytes) == ("convoy-pool", 4096, 2 << 20)
    assert (options.default_size, options.fs, options.lvm) == (100 << 30, "ext4", None)
    assert (options.autoextend, options.min_free) == (80, 10)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({}, "needs dm.datadev and dm.metadatadev"),
        ({"dm.datadev": "/dev/sdb"}, "needs dm.metadatadev"),
        ({"dm.datadev": "/dev/sdb", "dm.metadatadev": "/dev/sdb"}, "two separate devices"),
        ({"dm.thinpoolblocksize": "100"}, "dm.thinpoolblocksize=100 is not a thin pool block size: give 128 to 2097152"),
        ({"dm.thinpoolblocksize": "2M"}, "dm.thinpoolblocksize='2M' is not a number of 512-byte sectors"),
        ({"dm.thinpoolblocksize": "4097"}, "multiples of 128"),
        ({"dm.thinpoolname": "a/b"}, "dm.thinpoolname='a/b' is not a usable device-mapper name"),
        ({"dm.defaultvolumesize": "ten"}, "dm.defaultvolumesize='ten'"),
        ({"dm.defaultvolumesize": "1M"}, "too small"),
        ({"dm.fs": "btrfs"}, "dm.fs='btrfs' is not a file system convoy makes: use ext4 or xfs"),
        ({"dm.autoextend": "120"}, "dm.autoextend='120' is not a percentage"),
        ({"dm.min_free_space": "x%"}, "dm.min_free_space='x%' is not a percentage"),
    ],
)
def test_bad_options_name_the_option(options, said):
    base = {"dm.datadev": "/dev/sdb", "dm.metadatadev": "/dev/sdc"} if "dm.datadev" not in options and options else {}
    with pytest.raises(InvalidInput) as err:
        dm_options.parse({**base, **options})
    assert said in str(err.value)


def test_lvm_pool_instead_of_devices():
    options = dm_options.parse({"dm.lvm_thinpool": "vg0/thin", "dm.min_free_space": "5%"})
    assert str(options.lvm) == "vg0/thin" and options.datadev is None and options.min_free == 5
    with pytest.raises(InvalidInput, match=r"drop dm\.datadev"):
        dm_options.parse({"dm.lvm_thinpool": "vg0/thin", "dm.datadev": "/dev/sdb"})
    with pytest.raises(InvalidInput, match=r"is not VG/POOL"):
        dm_options.parse({"dm.lvm_thinpool": "thin"})


def test_the_driver_refuses_unknown_options(tmp_path):
    from app.storage.registry import build_driver

    with pytest.raises(InvalidInput, match="unknown devicemapper driver option"):
        build_driver("devicemapper", {"dm.datadev": "/dev/sdb", "dm.metadatadev": "/dev/sdc", "dm.bogus": "1"}, tmp_path)


# -- dmsetup's output --------------------------------------------------------------------------

POOL_STATUS = "0 20971520 thin-pool 3 27/262144 10/5120 - rw discard_passdown queue_if_no_space - 1024"


def test_pool_status():
    status = dmsetup.parse_pool_status(POOL_STATUS)
    assert (status.transaction_id, status.metadata_used, status.metadata_total) == (3, 27, 262144)
    assert (status.data_used, status.data_total, status.held_root, status.mode) == (10, 5120, "-", "rw")
    assert status.data_percent == pytest.approx(100 * 10 / 5120) and not status.needs_check
    held = dmsetup.parse_pool_status(
        "0 20971520 thin-pool 3 27/262144 10/5120 61 ro discard_passdown queue_if_no_space needs_check 1024"
    )
    assert held.held_root == "61" and held.mode == "ro" and held.needs_check


def test_failed_pool_says_what_to_do():
    with pytest.raises(Unavailable, match=r"thin pool has failed.*thin_check"):
        dmsetup.parse_pool_status("0 20971520 thin-pool Fail")


def test_ls_info_and_thin_tables():
    assert dmsetup.parse_ls("convoy-pool\t(254:0)\nconvoy-pool-1\t(254:1)\n") == ["convoy-pool", "convoy-pool-1"]
    assert dmsetup.parse_ls("No devices found\n") == []
    info = "Name:              convoy-pool-1\nState:             SUSPENDED\nRead Ahead:        256\nTables present:    LIVE\n"
    assert dmsetup.parse_info_state(info) == "SUSPENDED"
    assert dmsetup.parse_info_state("State:             ACTIVE (READ-ONLY)\n") == "ACTIVE"
    tables = dmsetup.parse_thin_tables("convoy-pool-1: 0 2097152 thin 254:0 1\nother: 0 8 thin 7:3 12 254:9\n")
    assert [(t.name, t.sectors, t.pool, t.device_id) for t in tables] == [
        ("convoy-pool-1", 2097152, "254:0", 1),
        ("other", 8, "7:3", 12),
    ]


# -- thin-provisioning-tools' output ------------------------------------------------------------

THIN_DUMP = """<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="4096" nr_data_blocks="5120">
  <device dev_id="1" mapped_blocks="5" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="2" time="0"/>
    <single_mapping origin_block="2" data_block="7" time="1"/>
    <single_mapping origin_block="9" data_block="8" time="1"/>
    <range_mapping origin_begin="511" data_begin="3" length="1" time="0"/>
  </device>
</superblock>
"""

THIN_DELTA = """<superblock uuid="" time="2" transaction="3" data_block_size="4096" nr_data_blocks="5120">
  <diff left="2" right="3">
    <same begin="0" length="2"/>
    <different begin="2" length="1"/>
    <same begin="3" length="6"/>
    <right_only begin="9" length="2"/>
    <left_only begin="100" length="1"/>
  </diff>
</superblock>
"""


CAPTURED_DUMP = """<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="4096" nr_data_blocks="100">
  <device dev_id="2" mapped_blocks="5" transaction="1" creation_time="1" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="2" time="0"/>
    <single_mapping origin_block="2" data_block="7" time="1"/>
    <single_mapping origin_block="10" data_block="5" time="0"/>
    <single_mapping origin_block="20" data_block="8" time="1"/>
  </device>
</superblock>
"""

CAPTURED_DELTA = """<superblock uuid="" time="1" transaction="2" data_block_size="4096" nr_data_blocks="100">
  <diff left="1" right="2">
    <same begin="0" length="2"/>
    <different begin="2" length="1"/>
    <same begin="10" length="1"/>
    <right_only begin="20" length="1"/>
  </diff>
</superblock>
"""


def test_captured_thin_dump_and_thin_delta():
    assert thin_tools.parse_dump_mappings(CAPTURED_DUMP.splitlines(keepends=True)) == [(0, 3), (10, 11), (20, 21)]
    assert thin_tools.parse_delta(CAPTURED_DELTA.splitlines(keepends=True)) == [(2, 3), (20, 21)]


def test_mapped_ranges_from_thin_dump():
    assert thin_tools.parse_dump_mappings(THIN_DUMP.splitlines()) == [(0, 3), (9, 10), (511, 512)]


def test_changed_ranges_from_thin_delta():
    assert thin_tools.parse_delta(THIN_DELTA.splitlines()) == [(2, 3), (9, 11), (100, 101)]


def test_too_many_ranges_mean_unknown():
    lines = [f'<single_mapping origin_block="{2 * n}" data_block="{n}" time="0"/>' for n in range(10)]
    with pytest.raises(thin_tools.TooMany):
        thin_tools.parse_dump_mappings(lines, limit=5)


def test_thin_ls_and_bytes():
    assert thin_tools.parse_thin_ls(["1 \n", "  7\n", "\n"]) == {1, 7}  # thin_ls 0.9 pads its column
    mib2 = 2 << 20
    assert thin_tools.to_bytes([(0, 3), (511, 512)], mib2, 1 << 30) == [(0, 3 * mib2), (511 * mib2, 1 << 30)]
    assert thin_tools.to_bytes([(600, 601)], mib2, 1 << 30) == []
    assert thin_tools.to_bytes(None, mib2, 1) is None


def test_metadata_device_kinds(tmp_path):
    blank, pool, other = tmp_path / "blank", tmp_path / "pool", tmp_path / "other"
    blank.write_bytes(b"\0" * 8192)
    pool.write_bytes(b"\1" * 32 + thin_tools.THIN_MAGIC.to_bytes(8, "little") + b"\0" * 4056)
    other.write_bytes(b"\x53\xef" * 2048)
    assert [thin_tools.metadata_kind(str(p)) for p in (blank, pool, other)] == ["blank", "thin", "other"]


# -- the ledger --------------------------------------------------------------------------------


def test_ledger_ids_only_grow_and_survive_a_reload(tmp_path):
    ledger = Ledger(tmp_path / "dm" / "pool.json")
    ledger.load()
    first = ledger.allocate(Entry("volume", "a", CREATING, 1 << 30), taken=set())
    second = ledger.allocate(Entry("volume", "b", CREATING, 1 << 30), taken={2, 3})
    assert (first, second) == (1, 4)
    ledger.set_state(first, READY)
    ledger.drop(second)
    again = Ledger(tmp_path / "dm" / "pool.json")
    again.load()
    assert again.devices[1].state == READY and 4 not in again.devices
    assert again.allocate(Entry("volume", "c", CREATING, 1), taken=set()) == 5  # 4 is not handed out again
    assert again.find("volume", "a") == 1 and again.owns(1, "a") and not again.owns(1, "b")


def test_damaged_ledger_says_what_to_do(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text("{not json")
    with pytest.raises(Damaged, match="move it away"):
        Ledger(path).load()
