"""Directories only root may enter: the daemon's root, the volume store, the mount root.

A restored volume may legitimately hold setuid binaries and device nodes
(a container's data); what makes them harmless on the host is that no other
host user can reach them. Docker does the same for /var/lib/docker/volumes.
Existing directories are fixed at every start, not only new ones.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o700


def make_private(path: Path) -> None:
    """Create `path` if needed (parents too) and make it 0700; a chmod refused is logged."""
    path.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    fix_mode(path)


def fix_mode(path: Path, fd: int | None = None) -> None:
    """Make an existing directory 0700 (through `fd` when given, so a link is never followed)."""
    try:
        st = os.fstat(fd) if fd is not None else os.stat(path)
        if stat.S_IMODE(st.st_mode) != PRIVATE_MODE:
            if fd is not None:
                os.fchmod(fd, PRIVATE_MODE)
            else:
                os.chmod(path, PRIVATE_MODE)
            log.info("made %s private (mode 0700, was %o): only root may enter it", path, stat.S_IMODE(st.st_mode))
    except OSError as err:  # for example an NFS export with root_squash
        log.warning("could not make %s private (mode 0700): %s; other host users may reach volume data", path, err.strerror)
