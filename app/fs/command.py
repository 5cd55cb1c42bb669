"""Run one host tool (losetup, blkid, mkfs, ...) and turn its failure into a ConvoyError.

Every failure names the tool, what it worked on, the tool's own first line of
complaint and what to do, so neither a CalledProcessError nor a traceback
ever reaches a user. Calls block: callers run them in worker threads.
"""

from __future__ import annotations

import os
import re
import subprocess

from app.errors import ConvoyError, Unavailable

# The Debian package of each tool, for "install it" (all listed in ci/apt-packages.txt).
PACKAGES = {
    "losetup": "mount",
    "mount": "mount",
    "blkid": "util-linux",
    "fsfreeze": "util-linux",
    "mkfs.ext4": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "dumpe2fs": "e2fsprogs",
    "mkfs.xfs": "xfsprogs",
    "xfs_growfs": "xfsprogs",
    "xfs_repair": "xfsprogs",
    "xfs_db": "xfsprogs",
}


# "e2fsck 1.47.0 (5-Feb-2023)": the banner e2fsprogs prints before anything it has to say
_BANNER = re.compile(r"^\S+ \d+(\.\d+)+ \(.*\)$")


def first_line(text: str, skip: re.Pattern[str] = _BANNER) -> str:
    """The first non-blank line that `skip` (a version banner) does not match, stripped: a tool's complaint in one line."""
    for line in text.splitlines():
        line = line.strip()
        if line and not skip.match(line):
            return line
    return ""


def run(
    argv: list[str],
    *,
    subject: str,
    todo: str,
    timeout: float = 60.0,
    error: type[ConvoyError] = Unavailable,
    ok: tuple[int, ...] = (0,),
) -> subprocess.CompletedProcess[str]:
    """Run `argv`; an exit code outside `ok` raises `error`.

    `subject` is the device or file worked on, `todo` what the user should do
    when it fails. The result is returned for exit codes in `ok`, so callers
    that give some codes a meaning (blkid's 2: nothing found) read them.
    """
    tool = os.path.basename(argv[0])
    try:
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        package = PACKAGES.get(tool, tool)
        raise Unavailable(
            f"{tool} is not installed on this host (needed for {subject}): install the Debian package {package}"
        ) from None
    except OSError as e:
        raise Unavailable(f"{tool} could not be run for {subject}: {e.strerror}; check the host's {tool}") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{tool} on {subject} did not finish within {timeout:g} s: {todo}") from None
    if result.returncode not in ok:
        said = first_line(result.stderr) or first_line(result.stdout) or f"exit status {result.returncode}"
        raise error(f"{tool} on {subject} failed: {said.rstrip('.')}; {todo}")
    return result
