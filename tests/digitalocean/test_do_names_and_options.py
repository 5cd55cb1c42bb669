"""Docker names as DigitalOcean names and tags, and the options a DO volume takes: checked before any API call."""

from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.names import check_volume_name
from app.storage.do_names import is_valid_name, name_from_tags, name_tag, volume_name
from app.storage.do_options import daemon_options, volume_request
from app.storage.option_values import GIB

UUID = "0b3aef8c-1f2e-11ee-9c1b-0a58ac14b3a1"


@pytest.mark.parametrize("name", ["data", "pg-main", "a1", "x" * 64])
def test_a_name_digitalocean_accepts_is_kept(name):
    assert volume_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["Data", "my_app.db", "1data", "data-", "a" * 65, "web.1", "UPPER_and.dots-", "9.", "x" * 200, "a--b_"],
)
def test_a_name_digitalocean_rejects_becomes_a_valid_deterministic_one(name):
    check_volume_name(name)
    mapped = volume_name(name)
    assert is_valid_name(mapped), mapped
    assert volume_name(name) == mapped, "the same on every droplet"
    assert mapped[:2] == name.lower()[:2] or mapped.startswith("v-"), "readable"


def test_names_that_differ_only_in_what_digitalocean_drops_get_different_volumes():
    names = ["Data", "data_", "data.", "DATA", "my_app", "my.app", "my-app", "My-App"]
    assert len({volume_name(n) for n in names}) == len(names)


@pytest.mark.parametrize("name", ["data", "Data", "my_app.db", "A_b.C-d", "x" * 121])
def test_the_docker_name_rides_on_a_lowercase_tag_and_comes_back(name):
    tag = name_tag(name)
    assert tag == tag.lower() and len(tag) <= 255
    assert all(c.isalnum() or c in ":_-" for c in tag), tag
    assert name_from_tags(["other", tag]) == name
    assert name_from_tags([tag.upper()]) == name, "DO matches tags regardless of case"


def test_a_name_too_long_for_a_tag_is_refused():
    with pytest.raises(InvalidInput, match="too long for the digitalocean back-end"):
        name_tag("A" * 200)


def test_sizes_are_whole_gib_rounded_up_with_the_default():
    assert volume_request({}, None, 10).size_gib == 10
    assert volume_request({}, 1, 10).size_gib == 1
    assert volume_request({}, GIB + 1, 10).size_gib == 2
    assert volume_request({}, 3 * GIB // 2, 10).size_gib == 2


def test_adopt_snapshot_tags_and_force_detach():
    assert volume_request({"id": UUID}, None, 10).adopt_id == UUID
    assert volume_request({"do_name": "old-vol"}, None, 10).adopt_name == "old-vol"
    assert volume_request({"snapshot": UUID}, None, 10).snapshot_id == UUID
    made = volume_request({"tags": "web, prod:eu ,team_a", "force_detach": "yes", "description": "db"}, None, 10)
    assert (made.tags, made.force_detach, made.description) == (["web", "prod:eu", "team_a"], True, "db")


@pytest.mark.parametrize(
    "options, size, message",
    [
        ({}, 20000 * GIB, "larger than a DigitalOcean volume can be: give at most 16384G"),
        ({"id": "vol-123"}, None, "id='vol-123' is not a DigitalOcean volume id: give its UUID"),
        ({"id": UUID, "do_name": "x1"}, None, "give id or do_name, not both"),
        ({"id": UUID, "snapshot": UUID}, None, "snapshot makes a new volume and id/do_name adopt an existing one"),
        ({"do_name": "Old_Vol"}, None, "do_name='Old_Vol' is not a DigitalOcean volume name"),
        ({"snapshot": "snap-1"}, None, "snapshot='snap-1' is not a DigitalOcean snapshot id"),
        ({"tags": "ok,not ok"}, None, "tags: 'not ok' is not a DigitalOcean tag"),
        ({"tags": "convoy:mine"}, None, "convoy keeps for its own tags"),
        ({"force_detach": "maybe"}, None, "force_detach='maybe' is not a boolean"),
    ],
)
def test_a_wrong_volume_option_is_refused_naming_it_and_what_is_valid(options, size, message):
    with pytest.raises(InvalidInput) as caught:
        volume_request(options, size, 10)
    assert message in str(caught.value), caught.value


def test_daemon_option_defaults():
    parsed = daemon_options({})
    assert (parsed.region, parsed.droplet_id, parsed.default_size_gib) == (None, None, 10)
    assert parsed.api_endpoint == "https://api.digitalocean.com" and not parsed.force_detach


@pytest.mark.parametrize(
    "options, message",
    [
        ({"do.region": "NYC 3"}, "do.region='NYC 3' is not a DigitalOcean region slug"),
        ({"do.droplet_id": "web-1"}, "do.droplet_id='web-1' is not a droplet id"),
        ({"do.api_endpoint": "ftp://x"}, "do.api_endpoint='ftp://x' is not an http(s) URL"),
        ({"do.default_size": "20P"}, "do.default_size 20P is larger than a DigitalOcean volume can be"),
        ({"do.default_size": "lots"}, "size 'lots' is not a size"),
        ({"do.force_detach": "perhaps"}, "do.force_detach='perhaps' is not a boolean"),
        ({"do.attach_timeout": "500"}, "do.attach_timeout=500 must be 1 to 110 seconds"),
    ],
)
def test_a_wrong_daemon_option_is_refused_naming_it(options, message):
    with pytest.raises(InvalidInput) as caught:
        daemon_options(options)
    assert message in str(caught.value), caught.value
