"""An encrypted store: the same five operations, every object sealed on the client.

It wraps the store that holds the bytes (vfs://, s3://) so the engine above
needs to know only two things: blocks are named by a keyed hash
(`block_id_key`), and what it reads back was authenticated. The store config
(public KDF parameters and the wrapped master key, authenticated on its own)
and the locks (who holds the store, when it expires: no data) stay plain, so
any host can see that a store is encrypted and who is using it.

Sizes are those of the plaintext (`size` takes the fixed overhead off), so
every bound of `limits.py` applies before an object is read, as in a plain
store.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

from .. import crypto, layout
from .base import ObjectStore, Stored


def _plain(key: str) -> bool:
    return key == layout.CONFIG or key.startswith(layout.LOCKS)


class EncryptedStore(ObjectStore):
    def __init__(self, inner: ObjectStore, cipher: crypto.ObjectCipher):
        self.inner = inner
        self.cipher = cipher
        # every trait the engine reads of a store (url, parallelism, lookups, costly_listing, warms, ...)
        # is the inner store's: one added to ObjectStore later cannot be forgotten here
        for trait in ObjectStore.__annotations__:
            setattr(self, trait, getattr(inner, trait))
        self.block_id_key = cipher.block_id_key

    def _where(self, key: str) -> str:
        return f"{key} in {self.url}"

    def put(self, key: str, data: Stored) -> None:
        if _plain(key):
            return self.inner.put(key, data)
        self.inner.put(key, self.cipher.seal(key, data if isinstance(data, list) else [data]))

    def get(self, key: str) -> bytes:
        data = self.inner.get(key)
        return data if _plain(key) else self.cipher.open(key, data, self._where(key))

    def get_view(self, key: str) -> bytes | memoryview:
        data = self.inner.get_view(key)
        return data if _plain(key) else self.cipher.open_view(key, data, self._where(key))

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self.get(key))  # only Convoy 0.5.2's archives are streamed; none live here

    def size(self, key: str) -> int:
        stored = self.inner.size(key)
        return stored if _plain(key) else max(0, stored - crypto.OVERHEAD)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)

    def list_stamped(self, prefix: str) -> Iterator[tuple[str, str]]:
        return self.inner.list_stamped(prefix)

    def list_folders(self, prefix: str) -> Iterator[str]:
        return self.inner.list_folders(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def warm(self, key: str) -> None:
        self.inner.warm(key)

    def sync(self) -> None:
        self.inner.sync()

    def close(self) -> None:
        self.inner.close()
