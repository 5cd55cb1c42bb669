"""Names of volumes, snapshots and backups: one rule, Docker's.

A name becomes a single path component (`<root>/vfs/NAME`, mount points,
snapshot directories) and a single component of object keys in stores
(`convoy-store/volumes/NAME/backups/BACKUP.json.zst`). It never holds '/'
and always starts with a letter or digit, so it is never '.' or '..' and
cannot escape its directory; a '..' inside a name (`a..b`) is harmless.
"""

from __future__ import annotations

import re

from app.errors import InvalidInput

# Docker's own rule (daemon/names): a leading letter or digit, then at least
# one more of letters, digits, '_', '.', '-'. No '/', so no path escapes.
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
MAX_NAME_LENGTH = 200


def check_name(kind: str, name: object) -> str:
    """Check the name of a volume, snapshot or backup; `kind` names it in the error."""
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"a {kind} name is required")
    if not _NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:  # fullmatch: `$` alone lets "vol\n" through
        raise InvalidInput(
            f"{kind} name {name!r} is not valid: use 2 to {MAX_NAME_LENGTH} characters from "
            "[a-zA-Z0-9_.-], starting with a letter or digit"
        )
    return name


def check_volume_name(name: object) -> str:
    return check_name("volume", name)
