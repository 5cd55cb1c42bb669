"""Errors are values with a message for the user.

Every failure the user can meet is one of these classes. The message says
what was wrong and what to do. They are mapped to HTTP statuses in exactly
one place (`app/http_errors.py`) and to CLI exit codes in one place
(`app/cli/output.py`).
"""

from __future__ import annotations

from typing import ClassVar


class ConvoyError(Exception):
    """Base of every user-facing error.

    A class that sets `kind` in its own body names a kind of error (the
    `kind` field of the control API's errors); `error_from` rebuilds it from
    that name. Subclasses that only refine a message keep their parent's kind.
    """

    kind = "error"
    _by_kind: ClassVar[dict[str, type[ConvoyError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            known = ConvoyError._by_kind.setdefault(cls.kind, cls)
            if known is not cls:
                raise TypeError(f"error kind {cls.kind!r} is declared by both {known.__qualname__} and {cls.__qualname__}")

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(ConvoyError):
    """The request itself is wrong: a bad name, size, option or URL."""

    kind = "invalid"


class NotFound(ConvoyError):
    """A named volume, snapshot, backup or job does not exist."""

    kind = "not_found"


class Conflict(ConvoyError):
    """The request is valid but the current state forbids it (in use, exists)."""

    kind = "conflict"


class Unavailable(ConvoyError):
    """Something outside us is not reachable or not ready (endpoint, device)."""

    kind = "unavailable"


class SnapshotFailed(Unavailable):
    """The back-end gave up on a snapshot it had started (an EBS snapshot in state error)."""


class Damaged(ConvoyError):
    """Something stored is not what Convoy wrote: a block that fails its hash, a
    truncated or undecodable object, a manifest that does not parse or
    validate, an entry no Convoy writes. Retrying does not help; the object
    must be restored from a copy or the backup deleted."""

    kind = "damaged"


class Cancelled(ConvoyError):
    """The user or a deadline cancelled the operation; nothing was committed."""

    kind = "cancelled"


class ConfigurationError(ConvoyError):
    """The daemon's settings are inconsistent with its state; it cannot start."""

    kind = "configuration"


def error_from(kind: str, message: str) -> ConvoyError:
    """Rebuild an error from its kind and message (as sent over the control API).

    Looked up among every class that declared a kind, however deep it sits
    below ConvoyError; an unknown kind (a newer daemon's) is a plain ConvoyError.
    """
    return ConvoyError._by_kind.get(kind, ConvoyError)(message)
