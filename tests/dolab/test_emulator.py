"""The DigitalOcean emulator through python-digitalocean itself (as the driver uses it) and through plain HTTP for
DO's error shapes: volumes, actions, snapshots, droplets, the metadata service, the data plane and the faults."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import digitalocean
import pytest
from digitalocean.Metadata import Metadata

from tests.dolab import dataplane
from tests.dolab.fixture import DROPLET_A, DROPLET_B, TOKEN

pytestmark = pytest.mark.needs_root
GIB = 1 << 30
WAIT = 15  # seconds: every wait in these tests is bounded


@pytest.fixture(scope="module", autouse=True)
def no_loop_device_leaks(tmp_path_factory):
    """After the whole file, no loop device is left on any volume file of any lab these tests made."""
    yield
    base = tmp_path_factory.getbasetemp()
    leaked = [loop for loop in dataplane.loops_backed_under(base) if "/state/volumes/" in (dataplane.backing_file(loop) or "")]
    assert leaked == []


@pytest.fixture
def do(dolab, monkeypatch):
    """A python-digitalocean Manager on the lab. The library's by-id look-ups (get_volume, get_droplet, ...) make
    objects that ignore the Manager's end_point and read DIGITALOCEAN_END_POINT instead: set it too."""
    monkeypatch.setenv("DIGITALOCEAN_END_POINT", dolab.endpoint + "/v2/")
    return dolab.manager()


def wait_until(check, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def new_volume(lab, name: str, size: int = 1, **fields) -> digitalocean.Volume:
    volume = digitalocean.Volume(
        token=TOKEN, end_point=lab.endpoint + "/v2/", name=name, region=lab.region, size_gigabytes=size, **fields
    )
    return volume.create()


def completed(lab, answer: dict) -> dict:
    """Wait for the action in a POST's answer to leave in-progress; return it."""
    action = digitalocean.Action(token=TOKEN, end_point=lab.endpoint + "/v2/", id=answer["action"]["id"])
    action.load()
    wait_until(lambda: action.load() or action.status != "in-progress", f"action {action.id} done")
    return {"id": action.id, "status": action.status, "type": action.type}


def attached(lab, volume: digitalocean.Volume, droplet_id: int = DROPLET_A) -> str:
    """Attach, wait, return the loop device behind the by-id link."""
    assert completed(lab, volume.attach(droplet_id, lab.region))["status"] == "completed"
    return os.readlink(lab.link_for(volume.name))


def raw_call(lab, method: str, path: str, token: str = TOKEN, body: dict | None = None):
    """(status, headers, JSON) over plain HTTP."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(lab.endpoint + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            return answer.status, answer.headers, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read() or b"null")


def expect_error(lab, method: str, path: str, body: dict | None, status: int, error_id: str) -> str:
    got, answer = lab.api(method, path, body)
    assert (got, answer["id"]) == (status, error_id), answer
    assert answer["request_id"]
    return answer["message"]


# --- auth, headers, errors -----------------------------------------------------------------------------------------
def test_a_wrong_or_missing_token_gets_401_in_dos_error_shape(dolab):
    status, headers, answer = raw_call(dolab, "GET", "/v2/volumes", token="not-the-token")
    assert status == 401
    assert answer["id"] == "Unauthorized" and answer["message"] == "Unable to authenticate you" and answer["request_id"]
    assert headers["ratelimit-limit"] == "5000"
    request = urllib.request.Request(dolab.endpoint + "/v2/volumes")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=WAIT)
    assert caught.value.code == 401


def test_every_answer_carries_rate_limit_headers_counting_down(dolab):
    _, first, _ = raw_call(dolab, "GET", "/v2/regions")
    _, second, _ = raw_call(dolab, "GET", "/v2/volumes")
    assert first["ratelimit-limit"] == second["ratelimit-limit"] == "5000"
    assert int(second["ratelimit-remaining"]) == int(first["ratelimit-remaining"]) - 1
    assert abs(int(first["ratelimit-reset"]) - (time.time() + 3600)) < 60


def test_unknown_paths_and_ids_are_404_not_found(dolab):
    assert expect_error(dolab, "GET", "/v2/volumes/no-such-volume", None, 404, "not_found")
    assert expect_error(dolab, "GET", "/v2/nothing-here", None, 404, "not_found")
    assert expect_error(dolab, "GET", "/v2/actions/42", None, 404, "not_found")


# --- volumes -------------------------------------------------------------------------------------------------------
def test_volume_create_get_list_filter_delete_through_python_digitalocean(dolab, do):
    volume = new_volume(dolab, "data", 2, description="app data", tags=["convoy", "docker-name:data"])
    assert volume.id and volume.created_at.endswith("Z")
    loaded = do.get_volume(volume.id)
    assert (loaded.name, loaded.size_gigabytes, loaded.description) == ("data", 2, "app data")
    assert loaded.region["slug"] == "nyc3" and loaded.droplet_ids == [] and loaded.tags == ["convoy", "docker-name:data"]
    assert (dolab.state_dir / "volumes" / f"{volume.id}.img").stat().st_size == 2 * GIB
    new_volume(dolab, "other")
    assert sorted(v.name for v in do.get_all_volumes()) == ["data", "other"]
    assert [v.name for v in do.get_all_volumes(region="nyc3")] == ["data", "other"]
    assert do.get_all_volumes(region="sfo3") == []
    status, answer = dolab.api("GET", "/v2/volumes?name=data&region=nyc3")
    assert status == 200 and [v["id"] for v in answer["volumes"]] == [volume.id] and answer["meta"]["total"] == 1
    assert volume.destroy() is True
    assert not (dolab.state_dir / "volumes" / f"{volume.id}.img").exists()
    with pytest.raises(digitalocean.NotFoundError):
        do.get_volume(volume.id)


@pytest.mark.parametrize("name", ["Data", "1data", "data_1", "data.1", "a" * 65, "-data"])
def test_volume_names_dos_rules_reject_get_422(dolab, name):
    message = expect_error(
        dolab, "POST", "/v2/volumes", {"name": name, "region": "nyc3", "size_gigabytes": 1}, 422, "unprocessable_entity"
    )
    assert "invalid volume name" in message


def test_volume_create_checks(dolab):
    ok = {"name": "a" + "-" * 62 + "z", "region": "nyc3", "size_gigabytes": 1}
    assert dolab.api("POST", "/v2/volumes", ok)[0] == 201  # 64 characters, dashes: fine
    assert "already exists" in expect_error(dolab, "POST", "/v2/volumes", ok, 409, "conflict")
    base = {"name": "v", "region": "nyc3", "size_gigabytes": 1}
    expect_error(dolab, "POST", "/v2/volumes", {**base, "size_gigabytes": 0}, 422, "unprocessable_entity")
    expect_error(dolab, "POST", "/v2/volumes", {**base, "size_gigabytes": 16 * 1024 + 1}, 422, "unprocessable_entity")
    expect_error(dolab, "POST", "/v2/volumes", {**base, "region": "mars1"}, 422, "unprocessable_entity")
    expect_error(dolab, "POST", "/v2/volumes", {**base, "filesystem_type": "ntfs"}, 422, "unprocessable_entity")
    expect_error(dolab, "POST", "/v2/volumes", {**base, "filesystem_label": "x"}, 422, "unprocessable_entity")
    expect_error(dolab, "POST", "/v2/volumes", {**base, "tags": "x"}, 422, "unprocessable_entity")
    assert dolab.api("POST", "/v2/volumes", {**base, "region": "sfo3"})[0] == 201  # same name, another region


def test_filesystem_type_formats_the_new_volume(dolab):
    status, answer = dolab.api(
        "POST",
        "/v2/volumes",
        {"name": "fs", "region": "nyc3", "size_gigabytes": 1, "filesystem_type": "ext4", "filesystem_label": "mydata"},
    )
    assert status == 201 and answer["volume"]["filesystem_type"] == "ext4"
    file = dolab.state_dir / "volumes" / f"{answer['volume']['id']}.img"
    probe = subprocess.run(["blkid", "-o", "export", str(file)], capture_output=True, text=True, check=True).stdout
    assert "TYPE=ext4" in probe and "LABEL=mydata" in probe


def test_pagination_links_meta_and_python_digitalocean_following_them(dolab, do):
    for n in range(5):
        new_volume(dolab, f"vol{n}")
    status, answer = dolab.api("GET", "/v2/volumes?per_page=2&region=nyc3")
    assert status == 200 and len(answer["volumes"]) == 2 and answer["meta"]["total"] == 5
    pages = answer["links"]["pages"]
    assert set(pages) == {"next", "last"} and "page=2" in pages["next"] and "page=3" in pages["last"]
    assert "region=nyc3" in pages["next"] and "per_page=2" in pages["next"]
    status, second = dolab.api("GET", pages["next"].removeprefix(dolab.endpoint))
    assert [v["name"] for v in second["volumes"]] == ["vol2", "vol3"]
    assert set(second["links"]["pages"]) == {"first", "prev", "next", "last"}
    _, last = dolab.api("GET", pages["last"].removeprefix(dolab.endpoint))
    assert [v["name"] for v in last["volumes"]] == ["vol4"] and set(last["links"]["pages"]) == {"first", "prev"}
    _, whole = dolab.api("GET", "/v2/volumes")
    assert len(whole["volumes"]) == 5 and whole["links"] == {}
    # the library walks `next` by itself when a page is smaller than the collection
    assert [v["name"] for v in do.get_data("volumes", params={"per_page": 2})["volumes"]] == [f"vol{n}" for n in range(5)]


def test_delete_by_name_and_region(dolab, do):
    new_volume(dolab, "byname")
    expect_error(dolab, "DELETE", "/v2/volumes?name=byname", None, 400, "bad_request")
    expect_error(dolab, "DELETE", "/v2/volumes?name=byname&region=sfo3", None, 404, "not_found")
    assert dolab.api("DELETE", "/v2/volumes?name=byname&region=nyc3") == (204, None)
    assert do.get_all_volumes() == []


# --- droplets, regions, metadata -------------------------------------------------------------------------------------
def test_droplets_and_regions(dolab, do):
    droplets = do.get_all_droplets()
    assert sorted(d.id for d in droplets) == [DROPLET_A, DROPLET_B]
    droplet = do.get_droplet(DROPLET_A)
    assert droplet.status == "active" and droplet.region["slug"] == "nyc3" and droplet.volume_ids == []
    assert "nyc3" in [r.slug for r in do.get_all_regions()]
    assert expect_error(dolab, "GET", "/v2/droplets/999", None, 404, "not_found")


def test_metadata_service_per_droplet(dolab):
    for droplet_id in (DROPLET_A, DROPLET_B):
        base = dolab.metadata_endpoint(droplet_id)
        assert urllib.request.urlopen(base + "/metadata/v1/id", timeout=WAIT).read().decode() == str(droplet_id)
        assert urllib.request.urlopen(base + "/metadata/v1/region", timeout=WAIT).read().decode() == "nyc3"
    metadata = Metadata()
    metadata.end_point = dolab.metadata_endpoint(DROPLET_B) + "/metadata/v1"  # the library fixes 169.254.169.254
    metadata.load()
    assert (metadata.droplet_id, metadata.region, metadata.hostname) == (DROPLET_B, "nyc3", f"dolab-{DROPLET_B}")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(dolab.metadata_endpoint(DROPLET_A) + "/metadata/v1/nothing", timeout=WAIT)


# --- attach, detach, actions ---------------------------------------------------------------------------------------
def test_attach_makes_the_by_id_link_to_a_loop_device_and_detach_removes_both(dolab, do):
    volume = new_volume(dolab, "attachme")
    answer = volume.attach(DROPLET_A, "nyc3")
    action = answer["action"]
    assert action["status"] == "in-progress" and action["type"] == "attach_volume"
    assert action["resource_type"] == "volume" and action["region_slug"] == "nyc3" and action["completed_at"] is None
    assert completed(dolab, answer)["status"] == "completed"
    assert do.get_volume(volume.id).droplet_ids == [DROPLET_A]
    assert do.get_droplet(DROPLET_A).volume_ids == [volume.id]
    link = dolab.link_for("attachme")
    assert link.name == "scsi-0DO_Volume_attachme"
    loop = os.readlink(link)
    assert dataplane.backing_file(loop) == str((dolab.state_dir / "volumes" / f"{volume.id}.img").resolve())
    with open(link, "r+b") as device:  # bytes written through the device land in the volume's file
        device.seek(GIB // 2)
        device.write(b"written through the loop device")
        device.flush()
        os.fsync(device.fileno())
    with open(dolab.state_dir / "volumes" / f"{volume.id}.img", "rb") as file:
        file.seek(GIB // 2)
        assert file.read(31) == b"written through the loop device"
    detach = volume.detach(DROPLET_A, "nyc3")
    assert detach["action"]["type"] == "detach_volume"
    assert completed(dolab, detach)["status"] == "completed"
    assert not os.path.lexists(link) and dataplane.backing_file(loop) is None
    assert do.get_volume(volume.id).droplet_ids == []


def test_droplet_ids_change_only_when_the_action_completes(dolab, do):
    volume = new_volume(dolab, "slow")
    dolab.admin.stick_actions(True)
    answer = volume.attach(DROPLET_A, "nyc3")
    time.sleep(0.6)  # twice the attach delay
    status, action = dolab.api("GET", f"/v2/actions/{answer['action']['id']}")
    assert status == 200 and action["action"]["status"] == "in-progress"
    assert do.get_volume(volume.id).droplet_ids == [] and not os.path.lexists(dolab.link_for("slow"))
    message = expect_error(
        dolab,
        "POST",
        f"/v2/volumes/{volume.id}/actions",
        {"type": "attach", "droplet_id": DROPLET_A, "region": "nyc3"},
        422,
        "unprocessable_entity",
    )
    assert message == "Droplet already has a pending event."
    dolab.admin.stick_actions(False)
    assert completed(dolab, answer)["status"] == "completed"
    assert do.get_volume(volume.id).droplet_ids == [DROPLET_A]


def test_action_look_ups_by_volume_and_by_id(dolab):
    volume = new_volume(dolab, "looked")
    first = completed(dolab, volume.attach(DROPLET_A, "nyc3"))
    second = completed(dolab, volume.detach(DROPLET_A, "nyc3"))
    status, listed = dolab.api("GET", f"/v2/volumes/{volume.id}/actions")
    assert status == 200 and [a["id"] for a in listed["actions"]] == [first["id"], second["id"]]
    assert listed["meta"]["total"] == 2
    status, one = dolab.api("GET", f"/v2/volumes/{volume.id}/actions/{second['id']}")
    assert status == 200 and one["action"]["type"] == "detach_volume" and one["action"]["completed_at"]
    other = new_volume(dolab, "other")
    expect_error(dolab, "GET", f"/v2/volumes/{other.id}/actions/{second['id']}", None, 404, "not_found")
    assert dolab.api("GET", f"/v2/actions/{first['id']}")[1]["action"]["status"] == "completed"


def test_attach_and_detach_refusals(dolab):
    volume = new_volume(dolab, "busy")
    path = f"/v2/volumes/{volume.id}/actions"
    attach_b = {"type": "attach", "droplet_id": DROPLET_B, "region": "nyc3"}
    message = expect_error(
        dolab, "POST", path, {"type": "detach", "droplet_id": DROPLET_A, "region": "nyc3"}, 422, "unprocessable_entity"
    )
    assert message == "Attachment not found"
    expect_error(dolab, "POST", path, {"type": "attach", "droplet_id": 999, "region": "nyc3"}, 404, "not_found")
    expect_error(dolab, "POST", path, {**attach_b, "region": "sfo3"}, 422, "unprocessable_entity")
    expect_error(dolab, "POST", path, {"type": "explode"}, 400, "bad_request")
    attached(dolab, volume)
    assert "already attached to another Droplet (1001)" in expect_error(
        dolab, "POST", path, attach_b, 422, "unprocessable_entity"
    )
    message = expect_error(dolab, "POST", path, {**attach_b, "droplet_id": DROPLET_A}, 422, "unprocessable_entity")
    assert message.startswith("This volume is already attached")
    message = expect_error(dolab, "DELETE", f"/v2/volumes/{volume.id}", None, 409, "conflict")
    assert "attached to a Droplet cannot be deleted" in message


def test_a_volume_attaches_only_to_a_droplet_of_its_region(dolab):
    dolab.add_droplet(2001, region="sfo3")
    volume = new_volume(dolab, "east")
    message = expect_error(
        dolab,
        "POST",
        f"/v2/volumes/{volume.id}/actions",
        {"type": "attach", "droplet_id": 2001, "region": "nyc3"},
        422,
        "unprocessable_entity",
    )
    assert "nyc3" in message and "sfo3" in message


def test_actions_by_volume_name(dolab, do):
    volume = new_volume(dolab, "named")
    body = {"type": "attach", "volume_name": "named", "region": "nyc3", "droplet_id": DROPLET_B}
    status, answer = dolab.api("POST", "/v2/volumes/actions", body)
    assert status == 202 and completed(dolab, answer)["status"] == "completed"
    assert do.get_volume(volume.id).droplet_ids == [DROPLET_B]
    assert os.path.islink(dolab.link_for("named"))
    status, answer = dolab.api("POST", "/v2/volumes/actions", {**body, "type": "detach"})
    assert status == 202 and completed(dolab, answer)["status"] == "completed"
    expect_error(dolab, "POST", "/v2/volumes/actions", {**body, "region": None}, 400, "bad_request")
    expect_error(dolab, "POST", "/v2/volumes/actions", {**body, "volume_name": "nope"}, 404, "not_found")


def test_a_droplet_of_another_host_gets_state_only(dolab, do):
    dolab.add_droplet(3001, local=False)
    volume = new_volume(dolab, "remote")
    assert completed(dolab, volume.attach(3001, "nyc3"))["status"] == "completed"
    assert do.get_volume(volume.id).droplet_ids == [3001]
    assert not os.path.lexists(dolab.link_for("remote")) and dataplane.loops_backed_under(dolab.state_dir) == []


def test_resize_grows_the_file_and_the_attached_device(dolab, do):
    volume = new_volume(dolab, "grow")
    loop = attached(dolab, volume)
    assert int(subprocess.run(["blockdev", "--getsize64", loop], capture_output=True, text=True).stdout) == GIB
    answer = volume.resize(3, "nyc3")
    assert answer["action"]["type"] == "resize_volume"
    assert completed(dolab, answer)["status"] == "completed"
    assert do.get_volume(volume.id).size_gigabytes == 3
    assert int(subprocess.run(["blockdev", "--getsize64", loop], capture_output=True, text=True).stdout) == 3 * GIB
    path = f"/v2/volumes/{volume.id}/actions"
    assert "upwards" in expect_error(dolab, "POST", path, {"type": "resize", "size_gigabytes": 2}, 422, "unprocessable_entity")
    expect_error(dolab, "POST", path, {"type": "resize", "size_gigabytes": 16 * 1024 + 1}, 422, "unprocessable_entity")
    completed(dolab, volume.detach(DROPLET_A, "nyc3"))


# --- snapshots -----------------------------------------------------------------------------------------------------
def write_at(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as device:
        device.seek(offset)
        device.write(data)
        device.flush()
        os.fsync(device.fileno())


def read_at(path, offset: int, length: int) -> bytes:
    with open(path, "rb") as device:
        device.seek(offset)
        return device.read(length)


def test_snapshot_copies_the_bytes_and_a_volume_from_it_starts_with_them(dolab, do):
    volume = new_volume(dolab, "source", 2)
    loop = attached(dolab, volume)
    write_at(loop, GIB + 4096, b"snapshot me")
    answer = volume.snapshot("first")
    snap = answer["snapshot"]
    assert (snap["name"], snap["resource_id"], snap["resource_type"]) == ("first", volume.id, "volume")
    assert snap["regions"] == ["nyc3"] and snap["min_disk_size"] == 2 and snap["created_at"].endswith("Z")
    assert isinstance(snap["size_gigabytes"], float) and snap["tags"] == []
    write_at(loop, GIB + 4096, b"overwritten")  # after the snapshot: not in it
    assert [s.id for s in volume.get_snapshots()] == [snap["id"]]
    assert [s.id for s in do.get_volume_snapshots()] == [snap["id"]]
    assert do.get_droplet_snapshots() == []
    loaded = do.get_snapshot(snap["id"])
    assert (loaded.name, loaded.min_disk_size, loaded.resource_id) == ("first", 2, volume.id)

    small = {"name": "copy", "region": "nyc3", "size_gigabytes": 1, "snapshot_id": snap["id"]}
    assert "min_disk_size" in expect_error(dolab, "POST", "/v2/volumes", small, 422, "unprocessable_entity")
    copy = digitalocean.Volume(
        token=TOKEN, end_point=dolab.endpoint + "/v2/", name="copy", region="nyc3", size_gigabytes=3, snapshot_id=snap["id"]
    ).create_from_snapshot()
    assert do.get_volume(copy.id).size_gigabytes == 3
    copy_loop = attached(dolab, copy, DROPLET_B)
    assert read_at(copy_loop, GIB + 4096, 11) == b"snapshot me"
    assert int(subprocess.run(["blockdev", "--getsize64", copy_loop], capture_output=True, text=True).stdout) == 3 * GIB
    completed(dolab, volume.detach(DROPLET_A, "nyc3"))
    completed(dolab, copy.detach(DROPLET_B, "nyc3"))


def test_snapshot_rules_and_deletion(dolab, do):
    volume = new_volume(dolab, "snapped")
    path = f"/v2/volumes/{volume.id}/snapshots"
    expect_error(dolab, "POST", path, {}, 400, "bad_request")
    status, answer = dolab.api("POST", path, {"name": "one", "tags": ["convoy"]})
    assert status == 201 and answer["snapshot"]["tags"] == ["convoy"]
    snap_id = answer["snapshot"]["id"]
    expect_error(dolab, "POST", path, {"name": "one"}, 409, "conflict")
    status, listed = dolab.api("GET", "/v2/snapshots?resource_type=volume")
    assert [s["id"] for s in listed["snapshots"]] == [snap_id] and listed["meta"]["total"] == 1
    assert dolab.api("GET", "/v2/snapshots?resource_type=droplet")[1]["snapshots"] == []
    message = expect_error(dolab, "DELETE", f"/v2/volumes/{volume.id}", None, 409, "conflict")
    assert "snapshots" in message
    assert do.get_snapshot(snap_id).destroy() is True
    assert not (dolab.state_dir / "snapshots" / f"{snap_id}.img").exists()
    expect_error(dolab, "GET", f"/v2/snapshots/{snap_id}", None, 404, "not_found")
    expect_error(dolab, "DELETE", f"/v2/snapshots/{snap_id}", None, 404, "not_found")
    assert volume.destroy() is True


# --- faults ----------------------------------------------------------------------------------------------------------
def test_rate_limit_storm_answers_429_with_remaining_zero_then_recovers(dolab, do):
    dolab.admin.rate_limit_storm(2)
    for _ in range(2):
        status, headers, answer = raw_call(dolab, "GET", "/v2/volumes")
        assert status == 429 and headers["ratelimit-remaining"] == "0" and headers["retry-after"] == "1"
        assert int(headers["ratelimit-reset"]) <= time.time() + 2
        assert answer["id"] == "too_many_requests" and answer["message"] == "API Rate limit exceeded."
    status, headers, _ = raw_call(dolab, "GET", "/v2/volumes")
    assert status == 200 and int(headers["ratelimit-remaining"]) > 0
    dolab.admin.rate_limit_storm(1)
    with pytest.raises(digitalocean.DataReadError, match="Rate limit"):
        do.get_all_volumes()


def test_fail_next_answers_5xx_in_dos_shape(dolab):
    dolab.admin.fail_next(1)
    status, _, answer = raw_call(dolab, "GET", "/v2/volumes")
    assert status == 500 and answer["id"] == "server_error" and answer["request_id"]
    dolab.admin.fail_next(1, status=503)
    assert raw_call(dolab, "GET", "/v2/volumes")[0] == 503
    assert raw_call(dolab, "GET", "/v2/volumes")[0] == 200
    assert dolab.admin.calls()[-3:] == ["GET /v2/volumes"] * 3


def test_fail_next_after_work_loses_only_the_answer_of_the_calls_it_names(dolab):
    dolab.admin.fail_next(1, status=502, only="POST /v2/volumes", after_work=True)
    assert raw_call(dolab, "GET", "/v2/volumes")[0] == 200, "not a call it names"
    status, _, _ = raw_call(dolab, "POST", "/v2/volumes", body={"name": "lost", "region": dolab.region, "size_gigabytes": 1})
    assert status == 502
    assert [v["name"] for v in raw_call(dolab, "GET", "/v2/volumes")[2]["volumes"]] == ["lost"], "made all the same"


def mounted(loop: str, target) -> None:
    target.mkdir(exist_ok=True)
    subprocess.run(["mount", loop, str(target)], check=True, capture_output=True)


def test_detaching_a_device_a_running_droplet_uses_errors_and_an_off_droplet_lets_go(make_dolab, tmp_path, monkeypatch):
    lab = make_dolab(delays={"busy": 0.5})
    monkeypatch.setenv("DIGITALOCEAN_END_POINT", lab.endpoint + "/v2/")
    volume = new_volume(lab, "held", filesystem_type="ext4")
    loop = attached(lab, volume)
    mountpoint = tmp_path / "mnt"
    mounted(loop, mountpoint)
    try:
        assert completed(lab, volume.detach(DROPLET_A, "nyc3"))["status"] == "errored"
        assert lab.manager().get_volume(volume.id).droplet_ids == [DROPLET_A] and os.path.islink(lab.link_for("held"))
        lab.admin.power_off(DROPLET_A)
        assert lab.manager().get_droplet(DROPLET_A).status == "off"
        assert completed(lab, volume.detach(DROPLET_A, "nyc3"))["status"] == "completed"
        assert not os.path.lexists(lab.link_for("held"))
    finally:
        subprocess.run(["umount", str(mountpoint)], capture_output=True)
    wait_until(lambda: dataplane.loops_backed_under(lab.state_dir) == [], "the loop device gone once unmounted")
    lab.admin.power_on(DROPLET_A)
    assert lab.manager().get_droplet(DROPLET_A).status == "active"


# --- persistence -------------------------------------------------------------------------------------------------------
def test_restart_and_kill_keep_volumes_attachments_and_devices(dolab, do):
    volume = new_volume(dolab, "durable")
    loop = attached(dolab, volume)
    write_at(loop, 0, b"still here")
    snap_id = volume.snapshot("kept")["snapshot"]["id"]
    dolab.admin.stick_actions(True)
    pending = volume.resize(2, "nyc3")["action"]["id"]
    dolab.kill()
    dolab.start()
    assert dolab.admin.state()["faults"]["stick_actions"] is False  # faults are not persisted
    assert completed(dolab, {"action": {"id": pending}})["status"] == "completed"  # its due time survived
    loaded = do.get_volume(volume.id)
    assert (loaded.droplet_ids, loaded.size_gigabytes) == ([DROPLET_A], 2)
    assert do.get_snapshot(snap_id).name == "kept"
    assert read_at(dolab.link_for("durable"), 0, 10) == b"still here"
    dolab.restart()
    assert read_at(dolab.link_for("durable"), 0, 10) == b"still here"
    status, answer = dolab.api("GET", "/v2/actions")
    assert status == 200 and len(answer["actions"]) == 2


def test_a_restart_gives_an_attached_volume_whose_loop_device_went_a_new_one(dolab):
    volume = new_volume(dolab, "reloop")
    loop = attached(dolab, volume)
    dolab.kill()
    subprocess.run(["losetup", "-d", loop], check=True)  # e.g. a reboot of the host
    dolab.start()
    new_loop = os.readlink(dolab.link_for("reloop"))
    assert dataplane.backing_file(new_loop) == str((dolab.state_dir / "volumes" / f"{volume.id}.img").resolve())


def test_cleanup_removes_every_loop_device_and_link_even_after_kill(make_dolab, tmp_path):
    dev_root = tmp_path / "shared-dev"
    lab = make_dolab(dev_root=dev_root)
    volume = new_volume(lab, "leak")
    attached(lab, volume)
    (dev_root / "disk" / "by-id" / "not-the-labs").symlink_to("/dev/null")
    lab.kill()
    lab.cleanup()
    assert dataplane.loops_backed_under(lab.state_dir) == []
    assert not os.path.lexists(lab.link_for("leak"))
    assert os.path.islink(dev_root / "disk" / "by-id" / "not-the-labs")  # what it did not make stays


def test_an_existing_link_the_lab_did_not_make_is_left_alone(dolab):
    foreign = dolab.link_for("taken")
    foreign.parent.mkdir(parents=True, exist_ok=True)
    foreign.symlink_to("/dev/null")
    volume = new_volume(dolab, "taken")
    assert completed(dolab, volume.attach(DROPLET_A, "nyc3"))["status"] == "errored"
    assert os.readlink(foreign) == "/dev/null" and dataplane.loops_backed_under(dolab.state_dir) == []


# --- tags ------------------------------------------------------------------------------------------------------------
def test_tags_on_volumes_and_snapshots_through_python_digitalocean(dolab, do):
    volume = new_volume(dolab, "tagged", tags=["Convoy"])
    snap_id = volume.snapshot("snap")["snapshot"]["id"]
    tag = digitalocean.Tag(token=TOKEN, end_point=dolab.endpoint + "/v2/", name="convoy:name:data")
    tag.create()
    assert tag.name == "convoy:name:data" and tag.resources["count"] == 0
    volumes = [{"resource_id": volume.id, "resource_type": "volume"}]  # the library has no add_volumes
    assert tag.get_data("tags/convoy:name:data/resources", type="POST", params={"resources": volumes}) is True
    tag.add_snapshots([snap_id])
    assert do.get_volume(volume.id).tags == ["Convoy", "convoy:name:data"]
    assert do.get_snapshot(snap_id).tags == ["convoy:name:data"]
    status, answer = dolab.api("GET", "/v2/tags/convoy:name:data")
    assert status == 200 and answer["tag"]["resources"]["volumes"]["count"] == 1
    assert answer["tag"]["resources"]["volume_snapshots"]["count"] == 1
    tag.remove_snapshots([snap_id])
    assert do.get_snapshot(snap_id).tags == []
    assert [t["name"] for t in dolab.api("GET", "/v2/tags")[1]["tags"]] == ["Convoy", "convoy:name:data"]
    assert tag.delete() is True
    assert do.get_volume(volume.id).tags == ["Convoy"]


def test_tags_are_case_stable_and_checked(dolab, do):
    new_volume(dolab, "first", tags=["PROD"])
    second = new_volume(dolab, "second", tags=["prod", "Prod"])
    assert do.get_volume(second.id).tags == ["PROD"]  # the first spelling is the tag's
    assert dolab.api("POST", "/v2/tags", {"name": "prod"})[1]["tag"]["name"] == "PROD"
    expect_error(dolab, "GET", "/v2/tags/prod", None, 404, "not_found")
    expect_error(dolab, "POST", "/v2/tags", {"name": "no spaces"}, 400, "bad_request")
    body = {"name": "v", "region": "nyc3", "size_gigabytes": 1, "tags": ["a.b"]}
    expect_error(dolab, "POST", "/v2/volumes", body, 422, "unprocessable_entity")
    resources = {"resources": [{"resource_id": "nope", "resource_type": "volume"}]}
    expect_error(dolab, "POST", "/v2/tags/PROD/resources", resources, 404, "not_found")
    resources = {"resources": [{"resource_id": second.id, "resource_type": "volume"}]}
    expect_error(dolab, "POST", "/v2/tags/unknown/resources", resources, 404, "not_found")
