"""The cryptography of encrypted stores (docs/backup-format.md, "Encrypted stores").

A store has one random 256-bit master key. It is stored only wrapped
(AES-256-GCM) under a key derived from the user's secret: scrypt of a
passphrase, or HKDF of a key (a key file, CONVOY_STORE_KEY), which already
holds 256 bits and needs no slow derivation. From the master key, HKDF
derives two independent keys: one encrypts every object (AES-256-GCM, a
random 96-bit nonce per object), the other keys the BLAKE3 hash that names
blocks, so equal blocks still dedup while a name says nothing about content
to whoever lacks the key.

Every object's associated data is the store's id and the object's key (its
name, which says its kind), so an object moved to another name, or copied
from another store, fails authentication instead of being read as what it
is not.
"""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from app.errors import ConfigurationError, Damaged, InvalidInput

from . import layout

CIPHER = "aes-256-gcm"
KDF_PASSPHRASE = "scrypt"  # noqa: S105 - the name of a KDF, not a password
KDF_KEY = "hkdf-sha256"

# scrypt for new stores: 128 MiB and ~0.3 s here, per unlock (cached per process)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 17, 8, 1
# what a store config may ask of scrypt before it runs: a planted config must
# not make the daemon spend gigabytes or minutes (1 GiB, a few seconds at most)
SCRYPT_MAX_MEMORY = 1 << 30
SCRYPT_MAX_P = 16

MIN_KEY_BYTES = 32  # a key (not a passphrase) is used as is: it must hold 256 bits
NONCE = 12
TAG = 16
MAGIC = layout.SEALED_MAGIC  # "CPE1": convoy-py encrypted, version 1
OVERHEAD = len(MAGIC) + NONCE + TAG


class WrongKey(ConfigurationError):
    """The secret given does not open the store (or its config was altered)."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise Damaged(f"{what} is not base64; the store config is damaged") from None


@dataclass(frozen=True)
class Secret:
    """What the user holds: a passphrase (scrypt) or a key (HKDF)."""

    kind: str  # KDF_PASSPHRASE or KDF_KEY
    value: bytes

    @staticmethod
    def passphrase(text: str) -> Secret:
        if not text:
            raise InvalidInput("the store passphrase is empty: give one (CONVOY_STORE_PASSPHRASE, or type it when asked)")
        return Secret(KDF_PASSPHRASE, text.encode())

    @staticmethod
    def key(data: bytes, where: str) -> Secret:
        data = data[:-1] if data.endswith(b"\n") else data  # `... | base64 > F` leaves a newline
        if len(data) < MIN_KEY_BYTES:
            raise InvalidInput(
                f"the store key in {where} holds {len(data)} bytes; a key needs at least {MIN_KEY_BYTES} "
                "(make one with `head -c 32 /dev/urandom | base64 > KEYFILE`), or use a passphrase"
            )
        return Secret(KDF_KEY, data)


def new_kdf(kind: str) -> dict[str, object]:
    """KDF parameters for a new store: a fresh random salt, and scrypt's cost for passphrases."""
    salt = b64(os.urandom(32))
    if kind == KDF_PASSPHRASE:
        return {"name": KDF_PASSPHRASE, "salt": salt, "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
    return {"name": KDF_KEY, "salt": salt}


def check_kdf(kdf: dict[str, object], where: str) -> None:
    """Refuse KDF parameters no Convoy writes, before any work is spent on them."""
    name = kdf.get("name")
    if name == KDF_KEY:
        return
    if name != KDF_PASSPHRASE:
        raise Damaged(f"{where}: key derivation {name!r} is unknown; the store config is damaged")
    n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (n, r, p))
    if not ints or not (2 <= n <= 1 << 24 and n & (n - 1) == 0 and 1 <= r <= 64 and 1 <= p <= SCRYPT_MAX_P):  # type: ignore[operator]
        raise Damaged(f"{where}: scrypt parameters n={n!r} r={r!r} p={p!r} are not valid; the store config is damaged")
    if 128 * r * n > SCRYPT_MAX_MEMORY:  # type: ignore[operator]
        raise Damaged(
            f"{where}: scrypt parameters n={n} r={r} would take {128 * r * n >> 20} MiB (more than "  # type: ignore[operator]
            f"{SCRYPT_MAX_MEMORY >> 20}); no Convoy writes them: the store config is damaged"
        )


def wrapping_key(secret: Secret, kdf: dict[str, object], where: str) -> bytes:
    """The key that wraps the master key, from the user's secret and the store's KDF parameters."""
    check_kdf(kdf, where)
    if kdf["name"] != secret.kind:
        needs = (
            "a passphrase (CONVOY_STORE_PASSPHRASE)"
            if kdf["name"] == KDF_PASSPHRASE
            else "a key (CONVOY_STORE_KEY_FILE or CONVOY_STORE_KEY)"
        )
        raise WrongKey(f"{where} is opened with {needs}, and the daemon was given the other kind")
    salt = unb64(str(kdf.get("salt", "")), f"{where}: the KDF salt")
    if kdf["name"] == KDF_PASSPHRASE:
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])  # type: ignore[call-overload]
        return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret.value)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"convoy-py store key wrap").derive(secret.value)


def wrap(wrapping: bytes, master: bytes, header: bytes) -> bytes:
    """The master key sealed under `wrapping`, bound to the config's other fields (`header`)."""
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(wrapping).encrypt(nonce, master, header)


def unwrap(wrapping: bytes, wrapped: bytes, header: bytes, where: str) -> bytes:
    try:
        master = AESGCM(wrapping).decrypt(wrapped[:NONCE], wrapped[NONCE:], header)
    except (InvalidTag, ValueError):
        raise WrongKey(
            f"the key given does not open the encrypted store {where}: wrong passphrase or key file, "
            "or its config.json was altered. Nothing was read or written"
        ) from None
    if len(master) != 32:
        raise Damaged(f"{where}: the wrapped master key is not 256 bits; the store config is damaged")
    return master


class _Scratch(threading.local):
    """Per-thread buffers reused block after block: a fresh 1 MiB object per block
    costs more in page faults here than AES-GCM itself (346 against 1,500 MB/s)."""

    def __init__(self) -> None:
        self.buffers: dict[str, bytearray] = {}

    def get(self, name: str, size: int) -> memoryview:
        buf = self.buffers.get(name)
        if buf is None or len(buf) < size:
            buf = self.buffers[name] = bytearray(size)
        return memoryview(buf)[:size]


_scratch = _Scratch()


class ObjectCipher:
    """Seals and opens the objects of one store, under keys derived from its master key."""

    def __init__(self, master: bytes, store_id: bytes):
        def derive(info: bytes) -> bytes:
            return HKDF(algorithm=hashes.SHA256(), length=32, salt=store_id, info=info).derive(master)

        self._aead = AESGCM(derive(b"convoy-py object encryption v1"))
        self.block_id_key = derive(b"convoy-py block ids v1")  # keyed BLAKE3: names blocks
        self._store_id = store_id

    def _aad(self, key: str) -> bytes:
        return b"convoy-py object\0" + self._store_id + b"\0" + key.encode()

    def seal(self, key: str, parts: list[bytes | memoryview]) -> memoryview:
        """The sealed form of `parts` (stored concatenated), in a per-thread buffer
        that stays valid until this thread's next `seal`."""
        views = [memoryview(p).cast("B") for p in parts]
        length = sum(len(v) for v in views)
        plain = _scratch.get("plain", length)
        pos = 0
        for v in views:
            plain[pos : pos + len(v)] = v
            pos += len(v)
        out = _scratch.get("sealed", OVERHEAD + length)
        nonce = os.urandom(NONCE)
        out[: len(MAGIC)] = MAGIC
        out[len(MAGIC) : len(MAGIC) + NONCE] = nonce
        self._aead.encrypt_into(nonce, plain, self._aad(key), out[len(MAGIC) + NONCE :])
        return out

    def _split(self, data: bytes | memoryview, where: str) -> tuple[memoryview, memoryview]:
        view = memoryview(data).cast("B")
        if len(view) < OVERHEAD or bytes(view[: len(MAGIC)]) != MAGIC:
            raise Damaged(f"{where} is not an encrypted object of this store (no Convoy wrote it); the store is damaged")
        return view[len(MAGIC) : len(MAGIC) + NONCE], view[len(MAGIC) + NONCE :]

    def _failed(self, where: str) -> Damaged:
        return Damaged(
            f"{where} fails authentication: it was altered, or moved from another name or store; "
            "it is not used. Restore it from a copy or delete the backup"
        )

    def open(self, key: str, data: bytes | memoryview, where: str) -> bytes:
        nonce, sealed = self._split(data, where)
        try:
            return self._aead.decrypt(nonce, sealed, self._aad(key))
        except InvalidTag:
            raise self._failed(where) from None

    def open_view(self, key: str, data: bytes | memoryview, where: str) -> memoryview:
        """`open` into a per-thread buffer valid until this thread's next `open_view` (blocks)."""
        nonce, sealed = self._split(data, where)
        out = _scratch.get("opened", len(sealed) - TAG)
        try:
            self._aead.decrypt_into(nonce, sealed, self._aad(key), out)
        except InvalidTag:
            raise self._failed(where) from None
        return out
