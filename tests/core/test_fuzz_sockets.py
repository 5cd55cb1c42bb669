"""Property-based fuzz of both sockets against one running daemon.

Thousands of generated requests: random endpoints of both APIs, bodies of the
right shape with wrong values, of the wrong shape, arbitrary JSON, raw bytes,
and bytes that are not HTTP at all. Whatever comes in, the daemon answers
with a user error (never a 5xx of its own, never "internal error"), logs no
traceback, stays up, and its catalog stays consistent: Docker's List equals
`convoy list`, every listed volume answers Get, and once every reference is
released nothing is left mounted.

Generated values never point outside the test's directory: a random
`--mountpoint` or `vfs://` path could otherwise bind-mount over, or write
into, the host's own directories. Each volume gets its own `--mountpoint`
places: one place given to two volumes is the separate defect of `convoy
mount` trusting whatever is mounted there already, which leaks mounts.
"""

import hashlib
import json
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_harness import UnixHTTPConnection, mounted_points

pytestmark = pytest.mark.needs_root

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "900"))  # 1 to 6 requests each: about 3000 in all, 30-40 s
CONCURRENT_EXAMPLES = int(os.environ.get("FUZZ_CONCURRENT_EXAMPLES", "150"))  # batches of 2 to 12 at once

# What the daemon knows when the fuzz starts (made by the `world` fixture).
VOLUMES = ["vol-a", "vol-b"]
SNAPSHOT = "snap-a"
NAMES = [*VOLUMES, SNAPSHOT, "new-1", "new-2", "ok.name", "", "x", "..", ".", "../etc", "a/b", "-x", "a..b", "v" * 250, "é"]
BAD_URLS = [
    "",
    "s3://",
    "s3://b@BAD_REGION/x",
    "ftp://host/x",
    "vfs://host/x",
    "vfs://relative",
    "vfs:///",
    "\\u0026",
    "?backup=b&volume=v",
]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
# text that never makes a URL scheme: random strings stay names, never paths on the host
plain_text = st.text(alphabet=st.characters(blacklist_characters=":/\x00", blacklist_categories=("Cs",)), max_size=12)


def wrong_or(*right):
    """One of the right values, or any other JSON value (wrong type, null, nested...)."""
    return st.one_of(*right, json_values)


garbage_bodies = st.one_of(json_values.map(json.dumps), st.binary(max_size=64))


def bodies(**fields):
    """Bodies for an endpoint taking `fields` (each a strategy of right values): mostly well-formed
    (so requests reach the service, not only the schema), then wrong-typed fields, then garbage."""
    right = st.fixed_dictionaries({}, optional=fields).map(json.dumps)
    wrong = st.fixed_dictionaries({}, optional={key: wrong_or(value) for key, value in fields.items()}).map(json.dumps)
    return st.one_of(right, right, wrong, garbage_bodies)


class World:
    """Paths and URLs of the fixture's store, so generated URLs point there and nowhere else."""

    def __init__(self, base):
        self.store = f"vfs://{base}/store"
        self.other_store = f"vfs://{base}/other-store"
        self.init_store = f"vfs://{base}/init-store"
        self.mount_dir = base / "extra-mounts"
        self.backup_url = ""

    def store_urls(self):
        return st.sampled_from([self.store, self.other_store, *BAD_URLS]) | plain_text

    def backup_urls(self):
        fake = [f"{self.store}?backup=nosuch&volume=vol-a", f"{self.store}?backup=b1", f"{self.store}?volume=vol-a"]
        return st.sampled_from([self.backup_url, *fake, *BAD_URLS]) | plain_text

    def mountpoints(self, volume: str):
        """`convoy mount --mountpoint` places of one volume; each volume has its own (see the module doc)."""
        tag = hashlib.sha256(volume.encode(errors="replace")).hexdigest()[:12]
        return st.sampled_from([None, str(self.mount_dir / f"{tag}-1"), str(self.mount_dir / f"{tag}-2")])


def names():
    return st.sampled_from(NAMES) | plain_text


def options(world: World):
    keys = st.sampled_from(["size", "driver", "backup", "bogus"]) | plain_text
    values = st.one_of(st.sampled_from(["1G", "10M", "0", "-1", "abc", "vfs", "nosuch", "4096"]), world.backup_urls(), plain_text)
    return st.dictionaries(keys, values, max_size=3)


# -- Docker's plugin socket ---------------------------------------------------

def docker_requests(world: World):
    name, container = names(), st.sampled_from(["c1", "c2"]) | plain_text
    endpoints = [
        st.tuples(st.sampled_from(["/Plugin.Activate", "/VolumeDriver.List", "/VolumeDriver.Capabilities"]), bodies()),
        st.tuples(st.just("/VolumeDriver.Create"), bodies(Name=name, Opts=st.none() | options(world))),
        st.tuples(st.sampled_from(["/VolumeDriver.Mount", "/VolumeDriver.Unmount"]), bodies(Name=name, ID=container)),
        st.tuples(st.sampled_from(["/VolumeDriver.Remove", "/VolumeDriver.Path", "/VolumeDriver.Get"]), bodies(Name=name)),
    ]
    return st.one_of(*endpoints).map(lambda r: ("plugin", "POST", r[0], r[1]))


# -- the control socket -------------------------------------------------------


def control_requests(world: World):
    name = names().map(lambda n: quote(n, safe=""))

    def query(**fields):
        return st.fixed_dictionaries({}, optional=fields).map(lambda q: "?" + urlencode(q) if q else "")

    sizes = st.sampled_from(["1G", "0", "-5", "abc"])
    endpoints = [
        st.tuples(st.just("GET"), st.sampled_from(["/v1/info", "/v1/volumes", "/v1/jobs", "/v1/snapshots"]), st.just(None)),
        st.tuples(
            st.just("POST"),
            st.just("/v1/volumes"),
            bodies(name=names(), driver=st.just("vfs") | plain_text, size=sizes, options=options(world)),
        ),
        st.tuples(st.just("GET"), name.map(lambda n: f"/v1/volumes/{n}"), st.just(None)),
        st.tuples(
            st.just("DELETE"),
            st.tuples(name, query(reference_only=st.sampled_from(["1", "0", "true", "maybe", ""]))).map(
                lambda p: f"/v1/volumes/{p[0]}{p[1]}"
            ),
            st.just(None),
        ),
        names().flatmap(
            lambda n: st.tuples(
                st.just("POST"), st.just(f"/v1/volumes/{quote(n, safe='')}/mount"), bodies(mountpoint=world.mountpoints(n))
            )
        ),
        st.tuples(st.just("POST"), name.map(lambda n: f"/v1/volumes/{n}/umount"), bodies()),
        st.tuples(st.just("POST"), st.just("/v1/snapshots"), bodies(volume=names(), name=names())),
        st.tuples(st.just("GET"), query(volume=names()).map(lambda q: f"/v1/snapshots{q}"), st.just(None)),
        st.tuples(st.sampled_from(["GET", "DELETE"]), name.map(lambda n: f"/v1/snapshots/{n}"), st.just(None)),
        st.tuples(st.just("POST"), st.just("/v1/backups"), bodies(snapshot=names(), dest=world.store_urls(), name=names())),
        st.tuples(st.just("GET"), query(dest=world.store_urls(), volume=names()).map(lambda q: f"/v1/backups{q}"), st.just(None)),
        st.tuples(st.just("GET"), query(url=world.backup_urls()).map(lambda q: f"/v1/backups/inspect{q}"), st.just(None)),
        st.tuples(
            st.just("POST"), st.sampled_from(["/v1/backups/delete", "/v1/backups/verify"]), bodies(url=world.backup_urls())
        ),
        st.tuples(
            st.just("POST"),
            st.just("/v1/restores"),
            bodies(name=names(), url=world.backup_urls(), size=sizes, options=options(world)),
        ),
        st.tuples(st.sampled_from(["GET", "POST"]), plain_text.map(lambda j: f"/v1/jobs/{quote(j, safe='')}"), st.just(None)),
        st.tuples(  # convoy store init, into a store of its own (the others' backups stay plain)
            st.just("POST"),
            st.just("/v1/stores"),
            bodies(
                dest=st.sampled_from([world.init_store, *BAD_URLS]) | plain_text,
                encrypt=st.booleans(),
                passphrase=plain_text,
                key=st.sampled_from(["", "not base64!", "c2hvcnQ=", "a2V5" * 12]) | plain_text,
            ),
        ),
        st.tuples(
            st.sampled_from(["GET", "POST", "PUT", "DELETE"]), plain_text.map(lambda p: "/" + quote(p, safe="/")), garbage_bodies
        ),
    ]
    return st.one_of(*endpoints).map(lambda r: ("control", r[0], r[1], r[2]))


def raw_garbage():
    """Bytes that are not HTTP, sent straight to either socket."""
    return st.tuples(st.sampled_from(["plugin", "control"]), st.just("RAW"), st.just(""), st.binary(min_size=1, max_size=200))


# -- the test -----------------------------------------------------------------


@pytest.fixture
def world(daemon, tmp_path):
    world = World(tmp_path)
    for volume in VOLUMES:
        daemon.cli("create", volume, check=True)
    (daemon.root / "vfs" / "vol-a" / "hello.txt").write_text("hello\n")
    daemon.cli("snapshot", "create", "vol-a", "--name", SNAPSHOT, check=True)
    world.backup_url = daemon.cli("backup", "create", SNAPSHOT, "--dest", world.store, check=True).stdout.strip()
    return world


def send(daemon, request) -> tuple[int, dict | None]:
    which, method, path, body = request
    sock_path = daemon.plugin_socket if which == "plugin" else daemon.socket
    if method == "RAW":
        return _send_raw(sock_path, body), None
    raw = body.encode() if isinstance(body, str) else body
    return http_call_raw(sock_path, method, path, raw)


def http_call_raw(sock_path, method, path, raw):
    """Like the harness's http_call, but an answer that is not JSON is kept as text for the message."""
    connection = UnixHTTPConnection(sock_path, timeout=30)
    try:
        connection.request(method, path, body=raw)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, {"text": data.decode(errors="replace")}


def _send_raw(sock_path, data: bytes) -> int:
    """Send `data` and end the request; uvicorn answers 400 or closes. The status, or 0."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(10)
    try:
        connection.connect(str(sock_path))
        connection.sendall(data + b"\r\n\r\n")
        connection.shutdown(socket.SHUT_WR)
        answer = connection.recv(100)
    except OSError:
        return 0
    finally:
        connection.close()
    parts = answer.split(b" ")
    return int(parts[1]) if answer.startswith(b"HTTP/1.1 ") and parts[1].isdigit() else 0


def check_answer(request, status: int, data: dict | None) -> None:
    which, method, path, _ = request
    where = f"{which} {method} {path}: {status} {data}"
    text = json.dumps(data or {})
    assert "internal error" not in text and "Traceback" not in text, where
    if which == "plugin" and status not in (0, 400):
        # Docker's protocol: 200, or an Err that is the user's message (500 as Docker's plugin helpers send, 413)
        assert status in (200, 413, 500), where
        assert status == 200 or data.get("Err"), where
    elif which == "control":
        assert status < 500, where


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_both_sockets(daemon, world, data):
    requests = st.one_of(docker_requests(world), control_requests(world), raw_garbage())
    for request in data.draw(st.lists(requests, min_size=1, max_size=6), label="requests"):
        status, answer = send(daemon, request)
        check_answer(request, status, answer)
    assert daemon.process.poll() is None, "the daemon must stay up"
    assert "Traceback" not in daemon.log_text(), "a traceback in the daemon log (the requests above caused it)"


@settings(max_examples=CONCURRENT_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_both_sockets_concurrently(daemon, world, data):
    """Batches sent at once: the same answers, and the same catalog, whatever the interleaving."""
    requests = st.one_of(docker_requests(world), control_requests(world))
    batch = data.draw(st.lists(requests, min_size=2, max_size=12), label="requests")
    with ThreadPoolExecutor(len(batch)) as pool:
        answers = list(pool.map(partial(send, daemon), batch))
    for request, (status, answer) in zip(batch, answers, strict=True):
        check_answer(request, status, answer)
    assert daemon.process.poll() is None, "the daemon must stay up"
    assert "Traceback" not in daemon.log_text(), "a traceback in the daemon log (the requests above caused it)"


@pytest.fixture
def daemon(make_daemon):
    """One daemon for every generated example; S3 points at a closed port so nothing leaves the host."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    daemon = make_daemon(env=env)
    yield daemon
    try:
        check_consistent_and_release(daemon)
    finally:  # make_daemon cleans up under the daemon's base only; --mountpoint places are beside it
        for point in sorted(mounted_points(), reverse=True):
            if point.startswith(str(daemon.base.parent) + "/"):
                subprocess.run(["umount", "-l", point], check=False)


def check_consistent_and_release(daemon) -> None:
    """After the fuzz: alive, no traceback, one catalog for both sockets, nothing left mounted."""
    assert daemon.process.poll() is None, "the daemon must stay up"
    wait_for_jobs(daemon)
    docker_names = sorted(v["Name"] for v in daemon.docker_ok("List")["Volumes"])
    listed = json.loads(daemon.cli("list", "--json", check=True).stdout)
    assert docker_names == sorted(v["name"] for v in listed), "Docker's List and `convoy list` disagree"
    for volume in listed:
        got = daemon.docker_ok("Get", {"Name": volume["name"]})["Volume"]
        assert got["Mountpoint"] == volume["mountpoint"]
        release_every_reference(daemon, volume["name"])
    left = [p for p in mounted_points() if p.startswith(str(daemon.base.parent) + "/")]
    assert left == [], f"mounts left after every reference was released: {left}"
    log = daemon.log_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-5000:]


def release_every_reference(daemon, name: str) -> None:
    """Undo every mount of `name`: Docker's references are counted (one Unmount per Mount)."""
    for _ in range(1000):
        ref_ids = daemon.control("GET", f"/volumes/{quote(name, safe='')}")[1]["mount_ids"]
        if not ref_ids:
            return
        if ref_ids[0].startswith("convoy-cli"):
            daemon.cli("umount", name, check=True)  # releases every CLI reference at once
        else:
            daemon.docker_ok("Unmount", {"Name": name, "ID": ref_ids[0]})
    raise AssertionError(f"the references of {name} cannot be released")


def wait_for_jobs(daemon, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = daemon.control("GET", "/jobs")[1]["jobs"]
        if all(job["state"] != "running" for job in jobs):
            return
        time.sleep(0.2)
    raise AssertionError("jobs still running after the fuzz")
