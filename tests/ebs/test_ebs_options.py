"""What `-o` options an EBS volume takes: refused before any AWS call, with what is valid."""

from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.storage.ebs_devices import free_name
from app.storage.ebs_options import GIB, volume_request

DEFAULTS = {
    "default_size": 10 * GIB,
    "default_type": "gp3",
    "encrypted_by_default": True,
    "default_kms_key": None,
    "availability_zone": "us-east-1a",
}


def request(options: dict[str, str], size: int | None = None):
    return volume_request(options, size, **DEFAULTS)


def test_defaults_are_an_encrypted_gp3_volume_in_this_az():
    made = request({})
    assert (made.size_gib, made.volume_type, made.encrypted, made.availability_zone) == (10, "gp3", True, "us-east-1a")


def test_sizes_are_whole_gib_rounded_up():
    assert request({}, size=1).size_gib == 1
    assert request({}, size=GIB + 1).size_gib == 2


@pytest.mark.parametrize(
    "options, size_gib, message",
    [
        ({"type": "gp4"}, 10, "type='gp4' is not an EBS volume type: use one of gp3, gp2, io1, io2, st1, sc1"),
        ({"type": "io2"}, 10, "a io2 volume needs iops: add -o iops=N (100-256000)"),
        ({"type": "io1"}, 10, "a io1 volume needs iops"),
        ({"type": "gp2", "iops": "3000"}, 10, "iops is not settable on a gp2 volume"),
        ({"type": "gp2", "throughput": "250"}, 10, "throughput is only settable on gp3 volumes, not gp2"),
        ({"throughput": "5000"}, 10, "throughput=5000 MiB/s is outside 125-2000 for gp3"),
        ({"iops": "100"}, 10, "iops=100 is outside 3000-80000 for a gp3 volume"),
        ({"iops": "many"}, 10, "iops='many' is not a whole number"),
        ({"iops": "4000"}, 2, "iops=4000 is more than a 2G gp3 volume can have (500 per GiB): give at most 3000 or"),
        ({"type": "io1", "iops": "1000"}, 10, "iops=1000 is more than a 10G io1 volume can have (50 per GiB)"),
        ({"type": "st1"}, 10, "size 10G is outside what a st1 volume can be: give 125G to 16384G"),
        ({}, 20000, "size 20000G is outside what a gp3 volume can be"),
        ({"encrypted": "maybe"}, 10, "encrypted='maybe' is not a boolean"),
        ({"encrypted": "false", "kms_key_id": "alias/x"}, 10, "kms_key_id is given but encrypted=false"),
    ],
)
def test_a_wrong_option_is_refused_naming_it_and_what_is_valid(options, size_gib, message):
    with pytest.raises(InvalidInput) as caught:
        request(options, size=size_gib * GIB)
    assert message in str(caught.value), caught.value


def test_valid_provisioned_volumes():
    made = request({"type": "io2", "iops": "4000"}, size=20 * GIB)
    assert (made.volume_type, made.iops) == ("io2", 4000)
    made = request({"iops": "4000", "throughput": "250"}, size=20 * GIB)
    assert (made.iops, made.throughput) == (4000, 250)


def test_a_free_device_name_skips_what_the_instance_uses_in_either_spelling():
    assert free_name([]) == "/dev/sdf"
    assert free_name(["/dev/xvda", "/dev/sdf", "/dev/xvdg"]) == "/dev/sdh"
    assert free_name([f"/dev/sd{c}" for c in "fghijklmnop"]) is None
