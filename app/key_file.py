"""Reading a store key file, bounded: shared by the daemon (its CONVOY_STORE_KEY_FILE) and the CLI
(`store init --key-file`), without loading the cryptography the CLI does not need for it."""

from __future__ import annotations

from app.errors import ConvoyError

MAX_KEY_FILE = 1024  # a key is 32 bytes or its text; this is room enough


def read_key_file(path: str, error: type[ConvoyError]) -> bytes:
    """The key file's bytes; `error` (what it means to the caller: the daemon's setting, the user's
    argument) when it cannot be read or is too big to be a key."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as e:
        raise error(f"cannot read the store key file {path}: {e.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise error(f"the store key file {path} is bigger than {MAX_KEY_FILE} bytes: is it a key file?")
    return data
