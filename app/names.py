"""Volume names: Docker's rule, so a name can never escape its directory."""

from __future__ import annotations

import re

from app.errors import InvalidInput

# Docker's own rule (daemon/names): a leading letter or digit, then at least
# one more of letters, digits, '_', '.', '-'. No '/', so no path escapes.
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
MAX_NAME_LENGTH = 200


def check_name(kind: str, name: object) -> str:
    """Check the name of a volume or snapshot; `kind` names it in the error."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"a {kind} name is required")
    if not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(
            f"{kind} name {name!r} is not valid: use 2 to {MAX_NAME_LENGTH} characters from "
            "[a-zA-Z0-9_.-], starting with a letter or digit"
        )
    return name


def check_volume_name(name: object) -> str:
    return check_name("volume", name)
