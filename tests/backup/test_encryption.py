"""The encrypted store's pure logic: the store config, key wrapping, sealing, bounds (issue 13).

The daemon-level behaviour (CLI, wrong key, tampering, kill -9) is in
tests/core/test_encrypted_stores.py; this checks what a planted or edited
config can and cannot make the code do.
"""

import json

import pytest

from app.backup import crypto, encryption, engine
from app.backup.backup import SnapshotSource
from app.backup.objectstore import VfsStore, open_store
from app.backup.objectstore.base import ObjectStore
from app.backup.objectstore.encrypted import EncryptedStore
from app.backup.urls import parse_store_url
from app.errors import Conflict, Damaged, InvalidInput

KEY = b"k" * 32


@pytest.fixture
def store(tmp_path):
    with VfsStore(str(tmp_path / "store"), create=True) as s:
        yield s


def env_key(key: bytes = KEY) -> dict[str, str]:
    return {encryption.KEY_ENV: key.decode()}


def test_config_fields_are_bound_to_the_wrapped_key(store, tmp_path):
    encryption.init_store(store, crypto.Secret.key(KEY, "test"))
    assert encryption.unlock(store, env_key()).block_id_key is not None
    config_path = tmp_path / "store" / "convoy-store" / "config.json"
    original = json.loads(config_path.read_text())
    for edit in (
        lambda d: d.__setitem__("block_size", 65536),
        lambda d: d["encryption"].__setitem__("store_id", crypto.b64(b"x" * 16)),
        lambda d: d["encryption"]["kdf"].__setitem__("salt", crypto.b64(b"s" * 32)),
    ):
        doc = json.loads(json.dumps(original))
        edit(doc)
        config_path.write_text(json.dumps(doc))
        encryption._masters.clear()
        with pytest.raises(crypto.WrongKey, match=r"or its config\.json was altered"):
            encryption.unlock(store, env_key())
    config_path.write_text(json.dumps(original))
    with pytest.raises(crypto.WrongKey):
        encryption.unlock(store, env_key(b"other" * 8))


def test_a_planted_config_cannot_make_scrypt_take_gigabytes():
    where = "store"
    crypto.check_kdf({"name": "scrypt", "salt": "", "n": 1 << 17, "r": 8, "p": 1}, where)
    for n, r, p in ((1 << 24, 8, 1), (1 << 18, 64, 1), (1 << 17, 8, 1000), (1000, 8, 1), ("1", 8, 1), (True, 8, 1)):
        with pytest.raises(Damaged):
            crypto.check_kdf({"name": "scrypt", "salt": "", "n": n, "r": r, "p": p}, where)
    with pytest.raises(Damaged, match="unknown"):
        crypto.check_kdf({"name": "argon9"}, where)


def test_secrets_are_checked():
    with pytest.raises(InvalidInput, match="at least 32"):
        crypto.Secret.key(b"short\n", "F")
    assert crypto.Secret.key(KEY + b"\n", "F").value == KEY  # one trailing newline is not part of the key
    with pytest.raises(InvalidInput, match="empty"):
        crypto.Secret.passphrase("")


def test_a_passphrase_store_wants_a_passphrase(store):
    encryption.init_store(store, crypto.Secret(crypto.KDF_KEY, KEY))
    with pytest.raises(encryption.MissingKey, match="no key for it"):
        encryption.unlock(store, {encryption.PASSPHRASE_ENV: "a passphrase"})


def test_sealed_objects_are_bound_to_their_name_and_store():
    cipher = crypto.ObjectCipher(b"m" * 32, b"store-a")
    sealed = bytes(cipher.seal("convoy-store/volumes/v/volume.json", [b"{}"]))
    assert cipher.open("convoy-store/volumes/v/volume.json", sealed, "w") == b"{}"
    with pytest.raises(Damaged, match="moved from another name"):
        cipher.open("convoy-store/volumes/w/volume.json", sealed, "w")
    with pytest.raises(Damaged):
        crypto.ObjectCipher(b"m" * 32, b"store-b").open("convoy-store/volumes/v/volume.json", sealed, "w")
    with pytest.raises(Damaged, match="not an encrypted object"):
        cipher.open("k", b"\x28\xb5\x2f\xfd plain zstd", "w")


def test_an_encrypted_store_is_never_written_in_plaintext(store, tmp_path):
    """Opened without unlocking (a caller that skips the engine), a backup is refused before any write."""
    encryption.init_store(store, crypto.Secret.key(KEY, "test"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"data")
    from app.backup.backup import create_backup

    before = sorted(p.name for p in (tmp_path / "store").rglob("*"))
    with pytest.raises(Conflict, match="encrypted store opened without its key"):
        create_backup(store, "vol", SnapshotSource("s", str(tmp_path / "src")))
    assert sorted(p.name for p in (tmp_path / "store").rglob("*")) == before


def test_image_backup_round_trip_on_an_encrypted_store(tmp_path, monkeypatch):
    monkeypatch.setenv(encryption.KEY_ENV, KEY.decode())
    dest = f"vfs://{tmp_path / 'store'}"
    engine.init_store(dest, secret=crypto.Secret.key(KEY, "test"))
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
        f.seek(3 << 20)
        f.write(b"block data" * 50000)
    result = engine.create_image_backup(dest, "disk", "snap", str(image))
    assert engine.verify_backup(result["url"])["ok"]
    engine.restore_image(result["url"], str(tmp_path / "restored.img"))
    assert (tmp_path / "restored.img").read_bytes() == image.read_bytes()


@pytest.mark.parametrize("config", ["plain", "removed"])
def test_a_replaced_config_never_makes_a_backup_write_plaintext(tmp_path, monkeypatch, config):
    """Who holds the store swaps config.json for a plain one (or deletes it): the next
    backup of a volume backed up before refuses, and writes no data."""
    monkeypatch.setenv(encryption.KEY_ENV, KEY.decode())
    dest = f"vfs://{tmp_path / 'store'}"
    engine.init_store(dest, secret=crypto.Secret.key(KEY, "test"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"secret data" * 1000)
    engine.create_backup(dest, "vol", SnapshotSource("s1", str(tmp_path / "src")))
    config_path = tmp_path / "store" / "convoy-store" / "config.json"
    if config == "plain":
        config_path.write_text(json.dumps({"format": "convoy-py-store", "version": 1, "block_size": 1 << 20,
                                           "block_hash": "blake3", "compression": "zstd"}))
    else:
        config_path.unlink()
    blocks_before = sorted((tmp_path / "store" / "convoy-store" / "blocks").rglob("*"))
    with pytest.raises(Conflict, match="the config was replaced or removed"):
        engine.create_backup(dest, "vol", SnapshotSource("s2", str(tmp_path / "src")))
    assert sorted((tmp_path / "store" / "convoy-store" / "blocks").rglob("*")) == blocks_before
    assert not any(b"secret data" in p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())


def test_an_encrypted_store_has_the_traits_of_the_store_it_wraps(s3_endpoint, s3_bucket):
    """How many requests to make at once and whether listing costs are the S3 store's, not a plain
    default: with costly_listing lost, an encrypted S3 store's `backup list` listed every manifest."""
    inner = open_store(parse_store_url(f"s3://{s3_bucket}@us-east-1/p"), s3_endpoint=s3_endpoint)
    cipher = crypto.ObjectCipher(b"m" * 32, b"store-a")
    wrapped = EncryptedStore(inner, cipher)
    for trait in ObjectStore.__annotations__:
        expected = cipher.block_id_key if trait == "block_id_key" else getattr(inner, trait)
        assert getattr(wrapped, trait) == expected, trait
    assert (wrapped.costly_listing, wrapped.lookups) == (True, 12)
