"""device-mapper through `dmsetup`: create and remove devices, messages to a thin pool, status.

Thin wrappers, one call each, with a timeout and errors that name the
device and what to do (through `app.fs.command`). The parsers are plain
functions over dmsetup's text, tested on captured output.

Nodes without udev: in a plugin's container (or a guest with no udev
running) nobody answers libdevmapper's udev cookies and no node appears
under /dev/mapper. With DM_DISABLE_UDEV=1, dmsetup makes the nodes itself;
it is set whenever no udev daemon runs here (/run/udev/control absent) and
is never overridden when the caller set it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from app.errors import ConvoyError, NotFound, Unavailable
from app.fs import command

command.PACKAGES.update({"dmsetup": "dmsetup"})
TIMEOUT = 30.0
MAPPER = "/dev/mapper"
METADATA_BLOCK = 4096  # bytes: the thin pool's metadata block size
REMOVE_TRIES = 5  # `dmsetup remove` races a closing opener (blkid, a just-finished umount)


def _env() -> None:
    if "DM_DISABLE_UDEV" not in os.environ and not os.path.exists("/run/udev/control"):
        os.environ["DM_DISABLE_UDEV"] = "1"


def _dmsetup(
    *args: str,
    subject: str,
    todo: str,
    ok: tuple[int, ...] = (0,),
    timeout: float = TIMEOUT,
    error: type[ConvoyError] = Unavailable,
) -> str:
    _env()
    return command.run(["dmsetup", *args], subject=subject, todo=todo, ok=ok, timeout=timeout, error=error).stdout


def device_path(name: str) -> str:
    return f"{MAPPER}/{name}"


def names(target: str | None = None) -> list[str]:
    """Every device-mapper device (of one target type, e.g. "thin")."""
    args = ["ls"] + (["--target", target] if target else [])
    return parse_ls(
        _dmsetup(*args, subject="the device-mapper devices", todo="check that dm-mod is loaded (modprobe dm-thin-pool)")
    )


def create(name: str, table: str, *, read_only: bool = False) -> str:
    """Create and load `name` with `table`; its node under /dev/mapper, once it exists."""
    args = ["create", name, "--table", table] + (["--readonly"] if read_only else [])
    _dmsetup(*args, subject=f"device {name} ({table})", todo="see the kernel log (dmesg) for why the table was refused")
    return wait_node(name)


def wait_node(name: str, timeout: float = 10.0) -> str:
    path = device_path(name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            _dmsetup("mknodes", name, subject=f"the node of {name}", todo="check that /dev is writable")
            if not os.path.exists(path):
                raise Unavailable(f"{path} did not appear within {timeout:g} s: check /dev and udev (or set DM_DISABLE_UDEV=1)")
        time.sleep(0.05)
    return path


def remove(name: str) -> None:
    """Remove `name`; succeeds when it is gone already."""
    for attempt in range(REMOVE_TRIES):
        if name not in names():
            return
        try:
            _dmsetup("remove", name, subject=f"device {name}", todo="something holds it open: unmount it or stop what uses it")
            return
        except Unavailable:
            if attempt == REMOVE_TRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def suspend(name: str, *, lockfs: bool = True) -> None:
    """Suspend I/O to `name`. With lockfs=False the kernel does not freeze its file system (the caller did)."""
    _dmsetup("suspend", *([] if lockfs else ["--nolockfs"]), name, subject=f"device {name}", todo="see the kernel log (dmesg)")


def resume(name: str) -> None:
    _dmsetup(
        "resume", name, subject=f"device {name}", todo=f"its writers are blocked until it resumes: run `dmsetup resume {name}`"
    )


def reload(name: str, table: str) -> None:
    """Load `table` as `name`'s inactive table; it takes effect at the next resume."""
    _dmsetup("reload", name, "--table", table, subject=f"device {name}", todo="see the kernel log (dmesg)")


def message(pool: str, text: str) -> None:
    """Send `text` (create_thin, create_snap, delete, ...) to thin pool `pool`."""
    _dmsetup(
        "message",
        pool,
        "0",
        text,
        subject=f"thin pool {pool} (message {text!r})",
        todo="see the kernel log (dmesg) for the pool's complaint",
    )


def status(name: str) -> str:
    return _dmsetup("status", name, subject=f"device {name}", todo="check that it is active (dmsetup ls)", error=NotFound).strip()


def table(name: str) -> str:
    return _dmsetup("table", name, subject=f"device {name}", todo="check that it is active (dmsetup ls)", error=NotFound).strip()


def thin_tables() -> list[ThinTable]:
    """Every active thin device's table: which pool and which device id it maps."""
    return parse_thin_tables(_dmsetup("table", "--target", "thin", subject="the thin devices", todo="check dmsetup"))


def is_suspended(name: str) -> bool:
    return (
        parse_info_state(_dmsetup("info", name, subject=f"device {name}", todo="check that it is active (dmsetup ls)"))
        == "SUSPENDED"
    )


def devno(name: str) -> str:
    """`major:minor` of an active device, as thin tables name their pool."""
    st = os.stat(device_path(name))
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


# parsers of dmsetup's output ------------------------------------------------------------------


def parse_ls(text: str) -> list[str]:
    """`dmsetup ls`: "name\\t(254:0)" lines, or "No devices found"."""
    found = []
    for line in text.splitlines():
        match = re.match(r"^(\S+)\s+\(\d+(?::\s*|, )\d+\)\s*$", line)
        if match:
            found.append(match.group(1))
    return found


def parse_info_state(text: str) -> str:
    """`dmsetup info NAME`'s State: ACTIVE, SUSPENDED (a "(READ-ONLY)" suffix dropped)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "State":
            return value.strip().split(" ")[0]
    return ""


@dataclass(frozen=True)
class ThinTable:
    name: str
    sectors: int
    pool: str  # major:minor of the pool
    device_id: int


def parse_thin_tables(text: str) -> list[ThinTable]:
    """`dmsetup table --target thin`: "name: 0 2097152 thin 254:0 5" lines (one device: no "name:" prefix)."""
    found = []
    for line in text.splitlines():
        match = re.match(r"^(\S+):\s+0\s+(\d+)\s+thin\s+(\d+:\d+)\s+(\d+)(\s|$)", line)
        if match:
            found.append(ThinTable(match.group(1), int(match.group(2)), match.group(3), int(match.group(4))))
    return found


@dataclass(frozen=True)
class PoolStatus:
    """A thin pool's `dmsetup status`, in the kernel's units."""

    transaction_id: int
    metadata_used: int  # metadata blocks (4 KiB)
    metadata_total: int
    data_used: int  # data blocks (the pool's block size)
    data_total: int
    held_root: str  # "-" when no metadata snapshot is held
    mode: str  # rw, ro, out_of_data_space
    needs_check: bool

    @property
    def data_percent(self) -> float:
        return 100.0 * self.data_used / self.data_total if self.data_total else 0.0

    @property
    def metadata_percent(self) -> float:
        return 100.0 * self.metadata_used / self.metadata_total if self.metadata_total else 0.0


def parse_pool_status(text: str) -> PoolStatus:
    """ "0 20971520 thin-pool 1 11/262144 5/10240 - rw discard_passdown queue_if_no_space - 1024"."""
    fields = text.split()
    if len(fields) >= 4 and fields[2] == "thin-pool" and fields[3] in ("Fail", "Error"):
        raise Unavailable(
            f"the thin pool has failed ({fields[3]}): see the kernel log (dmesg); repair its metadata with "
            "thin_check/thin_repair before convoy can use it"
        )
    if len(fields) < 8 or fields[2] != "thin-pool":
        raise Unavailable(f"unexpected thin pool status {text!r}: is it a thin-pool device?")
    meta_used, meta_total = (int(n) for n in fields[4].split("/"))
    data_used, data_total = (int(n) for n in fields[5].split("/"))
    return PoolStatus(
        transaction_id=int(fields[3]),
        metadata_used=meta_used,
        metadata_total=meta_total,
        data_used=data_used,
        data_total=data_total,
        held_root=fields[6],
        mode=fields[7],
        needs_check="needs_check" in fields[8:],
    )
