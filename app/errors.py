"""Errors are values with a message for the user.

Every failure the user can meet is one of these classes. The message says
what was wrong and what to do. They are mapped to HTTP statuses in exactly
one place (`app/http_errors.py`) and to CLI exit codes in one place
(`app/cli/output.py`).
"""


class ConvoyError(Exception):
    """Base of every user-facing error."""

    kind = "error"

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


class ConfigurationError(ConvoyError):
    """The daemon's settings are inconsistent with its state; it cannot start."""

    kind = "configuration"


def error_from(kind: str, message: str) -> ConvoyError:
    """Rebuild an error from its kind and message (as sent over the control API)."""
    classes = {cls.kind: cls for cls in ConvoyError.__subclasses__()}
    return classes.get(kind, ConvoyError)(message)
