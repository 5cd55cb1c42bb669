"""The same contract for every destination: vfs:// on a directory, s3:// on a real HTTP endpoint."""

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.backup.objectstore import open_store
from app.backup.urls import parse_store_url
from app.errors import InvalidInput, NotFound, Unavailable


@pytest.fixture(params=["vfs", "s3"])
def store(request, tmp_path):
    if request.param == "vfs":
        s = open_store(f"vfs://{tmp_path}/store")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        s = open_store(f"s3://{bucket}@us-east-1/some/prefix", s3_endpoint=endpoint)
    yield s
    s.close()


def test_put_get_exists_delete(store):
    assert not store.exists("a/b/c")
    store.put("a/b/c", b"one")
    store.put("a/b/c", b"two")  # replaced whole
    assert store.get("a/b/c") == b"two"
    assert store.exists("a/b/c")
    assert store.size("a/b/c") == 3
    with store.open("a/b/c") as f:
        assert f.read() == b"two"
    store.delete("a/b/c")
    store.delete("a/b/c")  # already gone: fine
    assert not store.exists("a/b/c")
    with pytest.raises(NotFound):
        store.get("a/b/c")


def test_list_follows_every_page(store):
    # more than S3's 1000 keys per page (Convoy listed only the first page)
    keys = [f"blocks/{i % 7}/k{i:05d}" for i in range(1234)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put(k, b"x"), keys))
    store.put("other/k", b"y")
    assert sorted(store.list("blocks/")) == sorted(keys)
    assert sorted(store.list("blocks/3/")) == sorted(k for k in keys if k.startswith("blocks/3/"))
    assert list(store.list("nothing/")) == []


def test_vfs_put_is_atomic_and_leftovers_are_invisible(tmp_path):
    store = open_store(f"vfs://{tmp_path}")
    store.put("x/y", b"data")
    # what a writer killed mid-put leaves behind
    (tmp_path / "x" / "z.tmp-deadbeef0000").write_bytes(b"half")
    assert list(store.list("x/")) == ["x/y"]
    assert not [p for p in os.listdir(tmp_path / "x") if ".tmp-" in p and p != "z.tmp-deadbeef0000"]


def test_vfs_missing_destination_for_reading(tmp_path):
    with pytest.raises(NotFound) as err:
        open_store(f"vfs://{tmp_path}/nope", create=False)
    assert "does not exist" in str(err.value)


def test_s3_missing_bucket(s3_endpoint):
    with pytest.raises(NotFound) as err:
        open_store("s3://no-such-bucket@us-east-1/x", s3_endpoint=s3_endpoint)
    assert "does not exist" in str(err.value) and "create it" in str(err.value)


def test_s3_unreachable_endpoint():
    with pytest.raises(Unavailable) as err:
        open_store("s3://bucket@us-east-1/x", s3_endpoint="http://127.0.0.1:9")
    assert "cannot reach the S3 endpoint http://127.0.0.1:9" in str(err.value)


def test_s3_bad_endpoint():
    with pytest.raises(InvalidInput) as err:
        open_store("s3://bucket@us-east-1/x", s3_endpoint="127.0.0.1:9000")
    assert "must start with http://" in str(err.value)


def test_s3_missing_credentials(s3_endpoint, s3_bucket, monkeypatch, tmp_path):
    # a store opened before, with credentials: its sessions' shared model loader must not carry them over
    open_store(f"s3://{s3_bucket}@us-east-1/x", s3_endpoint=s3_endpoint).close()
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(Unavailable) as err:
        open_store(f"s3://{s3_bucket}@us-east-1/x", s3_endpoint=s3_endpoint)
    assert "no S3 credentials" in str(err.value) and "AWS_ACCESS_KEY_ID" in str(err.value)


def test_store_url_object_is_accepted(tmp_path):
    store = open_store(parse_store_url(f"vfs://{tmp_path}"))
    store.put("k", b"v")
    assert store.get("k") == b"v"


@pytest.mark.parametrize("view", [False, True], ids=["get", "view"])
def test_an_object_grown_after_its_size_was_looked_up_is_still_refused(store, monkeypatch, view):
    """A store another host writes can swap an object for a bigger one between a
    size look-up and the read: the cap holds on what is actually read."""
    from app.backup.limits import ObjectTooLarge

    store.put("blocks/x", b"y" * (256 * 1024))
    monkeypatch.setattr(store, "size", lambda key: 10)  # what a stat before the swap saw
    with pytest.raises(ObjectTooLarge, match="blocks/x"):
        store.get_at_most("blocks/x", 100, "block", view=view)
    assert bytes(store.get_at_most("blocks/x", 256 * 1024, "block", view=view)) == b"y" * (256 * 1024)


@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_a_vfs_object_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    """Whoever writes a store can plant a FIFO (a read would hang for ever) or a link to a host file."""
    from app.errors import Damaged

    s = open_store(f"vfs://{tmp_path}/store")
    s.put("blocks/ab/x", b"real")
    path = tmp_path / "store" / "blocks" / "ab" / "x"
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        (tmp_path / "host-secret").write_bytes(b"secret")
        path.symlink_to(tmp_path / "host-secret")
    else:
        path.mkdir()
    for read in (lambda: s.get("blocks/ab/x"), lambda: s.get_view("blocks/ab/x"),
                 lambda: s.get_at_most("blocks/ab/x", 10, "block"), lambda: s.open("blocks/ab/x").read()):
        with pytest.raises(Damaged, match=r"blocks/ab/x.*(not a regular file|symbolic link)"):
            read()
    s.close()


class _FailingBody:
    """A GET body that fails mid-read, as a dropped or stalled connection does."""

    def __init__(self, error: Exception):
        self.error = error

    def read(self, amt=None):
        raise self.error

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _transport_errors():
    import botocore.exceptions as bex

    return {
        "read-timeout": bex.ReadTimeoutError(endpoint_url="http://s3.example:9000"),  # an OSError too
        "connection-reset": bex.ResponseStreamingError(error="Connection reset by peer"),
    }


@pytest.mark.parametrize("op", ["verify", "restore"])
@pytest.mark.parametrize("error", list(_transport_errors()))
def test_a_convoy_archive_that_fails_to_download_is_unavailable_not_damaged(
    s3_endpoint, s3_bucket, tmp_path, monkeypatch, error, op
):
    """A network failure while streaming an archive says the store could not be
    read (retry), never that the backup is damaged, and never an internal error."""
    from app.backup import legacy_convoy
    from tests.backup.test_hostile_restore import convoy_backup, t_file

    convoy_backup(tmp_path / "src", [t_file("f", b"data")])
    store = open_store(f"s3://{s3_bucket}@us-east-1/p", s3_endpoint=s3_endpoint)
    for path in (tmp_path / "src").rglob("*"):
        if path.is_file():
            store.put(str(path.relative_to(tmp_path / "src")), path.read_bytes())
    real_get = store.client.get_object

    def get_object(**kw):
        response = real_get(**kw)
        if kw["Key"].endswith(".bak"):
            response["Body"] = _FailingBody(_transport_errors()[error])
        return response

    monkeypatch.setattr(store.client, "get_object", get_object)
    with pytest.raises(Unavailable) as err:
        if op == "verify":
            legacy_convoy.verify_archive(store, "hostile", "backup-1")
        else:
            legacy_convoy.restore_archive(store, "hostile", "backup-1", str(tmp_path / "target"))
    assert "damaged" not in str(err.value) and "S3" in str(err.value) and ".bak" in str(err.value), err.value
    store.close()


def test_a_stamp_changes_when_an_object_is_replaced_and_only_then(store):
    store.put("v/a", b"one")
    store.put("v/b", b"two")
    first = dict(store.list_stamped("v/"))
    assert sorted(first) == sorted(store.list("v/")) == ["v/a", "v/b"]
    assert dict(store.list_stamped("v/")) == first  # nothing written: nothing changed
    store.put("v/a", b"uno")  # same size, other bytes
    second = dict(store.list_stamped("v/"))
    assert second["v/a"] != first["v/a"] and second["v/b"] == first["v/b"]


def test_list_folders_names_each_folder_once(store):
    for key in ("v/a/1", "v/a/2", "v/b/c/3", "v/top", "w/d/4"):
        store.put(key, b"x")
    assert sorted(store.list_folders("v/")) == ["a", "b"]
    assert list(store.list_folders("nothing/")) == []
