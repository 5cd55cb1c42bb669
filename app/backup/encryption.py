"""Encrypted stores: made by `convoy store init --encrypt`, opened with the daemon's secret.

The store config (`convoy-store/config.json`, version 2) is plain so any
host sees the store is encrypted and how to derive its wrapping key; it
holds the master key wrapped (crypto.py), with every other field of the
config as associated data: a changed block size, KDF parameter or store id
makes the unwrap fail, as a wrong secret does.

Where the daemon's secret comes from (env only: a flag would show in `ps`;
the managed plugin gets it with `docker plugin set`):
  CONVOY_STORE_PASSPHRASE   a passphrase, for stores made with one
  CONVOY_STORE_KEY_FILE     a file holding a key, for stores made with one
  CONVOY_STORE_KEY          the key itself
Read at every opening of an encrypted store, so a changed key file needs
no restart. A plain store needs none of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from typing import Any

from app.errors import ConfigurationError, Conflict, Damaged, NotFound
from app.json_types import JSONObject
from app.key_file import read_key_file

from . import crypto, layout, manifest
from .objectstore import ObjectStore
from .objectstore.encrypted import EncryptedStore

PASSPHRASE_ENV = "CONVOY_STORE_PASSPHRASE"  # noqa: S105 - where the passphrase is, not one
KEY_FILE_ENV = "CONVOY_STORE_KEY_FILE"
KEY_ENV = "CONVOY_STORE_KEY"


class MissingKey(ConfigurationError):
    """The store is encrypted and the daemon was given no secret of the kind it needs."""


def secret_from_env(kind: str, env: Mapping[str, str] | None = None) -> crypto.Secret | None:
    """The daemon's secret of `kind` (crypto.KDF_PASSPHRASE or KDF_KEY), None when it has none."""
    env = os.environ if env is None else env
    if kind == crypto.KDF_PASSPHRASE:
        text = env.get(PASSPHRASE_ENV)
        return crypto.Secret.passphrase(text) if text else None
    if path := env.get(KEY_FILE_ENV):
        return crypto.Secret.key(read_key_file(path, ConfigurationError), f"{KEY_FILE_ENV}={path}")
    if text := env.get(KEY_ENV):
        return crypto.Secret.key(text.encode(), KEY_ENV)
    return None


def _header(raw: Mapping[str, Any]) -> bytes:
    """The associated data of the wrapped key: the config without it, in one canonical form."""
    doc = json.loads(json.dumps(raw))
    doc["encryption"].pop("wrapped_key", None)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def init_store(store: ObjectStore, secret: crypto.Secret | None, block_size: int | None = None) -> JSONObject:
    """Make a new store at `store`: encrypted under `secret`, or plain when it is None;
    its blocks `block_size` bytes (checked by the caller), else the store's default.

    Refused where a store already is: an existing store is never re-keyed or
    encrypted in place (its blocks are named and sealed by its own keys).
    """
    if store.exists(layout.CONFIG) or next(iter(store.list(layout.ROOT + "/")), None):
        raise Conflict(f"{store.url} is already a backup store: init makes new stores only (choose another path or prefix)")
    config = manifest.StoreConfig(block_size=block_size or store.default_block_size)
    if secret is None:
        manifest.write_config(store, config)
        return {"url": store.url, "encrypted": False, "block_size": config.block_size}
    kdf = crypto.new_kdf(secret.kind)
    master = os.urandom(32)
    config.version = manifest.STORE_VERSION_ENCRYPTED
    config.block_hash = "blake3-keyed"
    config.encryption = {"cipher": crypto.CIPHER, "store_id": crypto.b64(os.urandom(16)), "kdf": kdf}
    doc = config.to_json()
    wrapping = crypto.wrapping_key(secret, kdf, store.url)
    config.encryption["wrapped_key"] = crypto.b64(crypto.wrap(wrapping, master, _header(doc)))
    manifest.write_config(store, config)
    return {"url": store.url, "encrypted": True, "kdf": kdf["name"], "block_size": config.block_size}


# (config bytes, secret) digest -> master key: scrypt runs once per store and process, not per request
_masters: dict[bytes, bytes] = {}
_masters_lock = threading.Lock()


def unlock(store: ObjectStore, env: Mapping[str, str] | None = None) -> ObjectStore:
    """`store` as the engine uses it: unchanged when plain, wrapped in its cipher when encrypted.

    Fails, before anything is read or written beyond the config, when the
    daemon has no secret for an encrypted store or a wrong one.
    """
    try:
        found = manifest.read_config(store)
    except (Damaged, Conflict, NotFound):
        return store  # not ours to judge here: the engine reports a damaged or newer config where it reads it
    if found is None or "encryption" not in found[0]:
        return store
    doc, data = found
    enc = doc["encryption"]
    where = store.url
    crypto.check_kdf(dict(enc["kdf"]), f"{where}: {layout.CONFIG}")
    kind = str(enc["kdf"]["name"])
    secret = secret_from_env(kind, env)
    if secret is None:
        wanted = f"{PASSPHRASE_ENV}" if kind == crypto.KDF_PASSPHRASE else f"{KEY_FILE_ENV} (or {KEY_ENV})"
        raise MissingKey(
            f"{where} is an encrypted store and the daemon has no "
            f"{'passphrase' if kind == crypto.KDF_PASSPHRASE else 'key'} for it: start the daemon with {wanted} "
            "set (for the plugin: docker plugin set convoy ...). Nothing was read or written"
        )
    cache_key = hashlib.sha256(data + b"\0" + secret.kind.encode() + b"\0" + secret.value).digest()
    with _masters_lock:
        master = _masters.get(cache_key)
    if master is None:
        raw = json.loads(data)
        wrapping = crypto.wrapping_key(secret, dict(enc["kdf"]), where)
        master = crypto.unwrap(wrapping, crypto.unb64(enc["wrapped_key"], "the wrapped key"), _header(raw), where)
        with _masters_lock:
            _masters[cache_key] = master
    store_id = crypto.unb64(enc["store_id"], f"{where}: the store id")
    return EncryptedStore(store, crypto.ObjectCipher(master, store_id))
