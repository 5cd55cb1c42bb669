"""Extended attributes (capabilities, SELinux labels, user.*): read and write.

Values are kept base64-encoded in manifests. File systems without xattr
support simply have none; attributes a restore may not set (for example
security.* without privilege) are skipped rather than failing the restore.
"""

from __future__ import annotations

import base64
import errno
import os

_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.EPERM, errno.EACCES)
Target = str | int  # a path (never followed if a link) or an open file descriptor


def _nofollow(target: Target) -> dict[str, bool]:
    # a descriptor is the file itself; only a path could be a link to follow
    return {} if isinstance(target, int) else {"follow_symlinks": False}


def read(path: Target) -> dict[str, str] | None:
    try:
        names = os.listxattr(path, **_nofollow(path))
    except OSError as e:
        if e.errno in _UNSUPPORTED:
            return None
        raise
    out = {}
    for name in sorted(names):
        try:
            out[name] = base64.b64encode(os.getxattr(path, name, **_nofollow(path))).decode()
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise
    return out or None


def write(path: Target, values: dict[str, str] | None) -> None:
    for name, value in (values or {}).items():
        try:
            os.setxattr(path, name, base64.b64decode(value), **_nofollow(path))
        except OSError as e:
            if e.errno not in _UNSUPPORTED:
                raise


def copy(src: Target, dst: Target) -> None:
    write(dst, read(src))
