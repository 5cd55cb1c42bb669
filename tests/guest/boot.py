"""Boot the guest under QEMU (software emulation: KVM does not work on these machines) and collect its results.

The host offers the guest three things: the cached root image (copy-on-write: -snapshot, so the cache is
never changed), a fresh sparse scratch disk for the tests' loop files and temporary directories, and two
9p shares: the repository read-only at /repo and a results directory writable at /results. The request
(what to run, how long it may take) goes in through the results directory; pytest's junit XML, its log
and its exit status (or, for a command such as a benchmark, its output, exit status and the files it
writes into /results) come back out through it. A deadline on the whole boot kills QEMU, so a hung guest
never hangs the host's test run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from tests.guest.image import REPO, Image

# The managed plugin's test needs the bundle the host builds with a Docker engine: tests/e2e runs it in a boot
# of its own (tests/e2e/test_devicemapper_plugin.py), so the default suite leaves it out.
MANAGED_PLUGIN_TESTS = "tests/guest/inside/managed_plugin"
DEFAULT_ARGS = ["tests/guest/inside", f"--ignore={MANAGED_PLUGIN_TESTS}"]
HARNESS_FAILED = 3  # pytest's "internal error": the guest never reported a status
# QEMU's emulated CPUs (TCG) on a loaded host now and then wedge: the guest kernel then
# reports a soft lockup every ~28 s for as long as it lasts, and nothing in the guest moves
# again. A CPU stuck this long is wedged, not busy: the boot is stopped and made once more.
WEDGED_AFTER = 180  # seconds of one soft lockup
_SOFT_LOCKUP = re.compile(rb"soft lockup - CPU#\d+ stuck for (\d+)s")
WEDGED_MARK = "CONVOY-GUEST-HOST: the emulated CPUs wedged"  # written to the serial log when it is stopped


@dataclass
class Settings:
    """The harness's knobs. from_env() reads them from CONVOY_GUEST_* so that every argument of `run` goes to pytest."""

    # seconds for the whole boot. TCG runs at the host CPU's pace: on one machine of this kind, where all of
    # make test took 68 min instead of the 37-41 seen before, the inside suite took 21 min (1271 s)
    # (three hours later the same machine took 10 min, 598 s, and make test 46 min: a quieter hour, and the
    # CLI's quick path, which spares most CLI calls typer's import, a cost TCG multiplies)
    timeout: float = 1800.0
    memory_mib: int = 1536
    cpus: int = 2
    scratch_size: str = "8G"
    results: Path = REPO / "build" / "guest-results"
    console: bool = False  # echo the serial console live

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        env = os.environ
        settings = cls(
            timeout=float(env.get("CONVOY_GUEST_TIMEOUT", cls.timeout)),
            memory_mib=int(env.get("CONVOY_GUEST_MEMORY", cls.memory_mib)),
            cpus=int(env.get("CONVOY_GUEST_CPUS", cls.cpus)),
            scratch_size=env.get("CONVOY_GUEST_SCRATCH", cls.scratch_size),
            results=Path(env.get("CONVOY_GUEST_RESULTS", cls.results)),
            console=env.get("CONVOY_GUEST_CONSOLE", "") == "1",
        )
        for name, value in overrides.items():
            setattr(settings, name, value)
        return settings


@dataclass
class GuestRun:
    status: int
    results: Path
    seconds: float
    failures: list[str] = field(default_factory=list)
    reported: bool = False  # the guest wrote an exit status
    outcome: str = ""  # one line for the user: what exited how, after how long

    @property
    def junit(self) -> Path:
        return self.results / "junit.xml"

    @property
    def serial_log(self) -> Path:
        return self.results / "serial.log"


def qemu_command(image: Image, settings: Settings, scratch: Path, results: Path) -> list[str]:
    return [
        "qemu-system-x86_64",
        # tb-size=256 halves QEMU's memory at no cost in speed (measured: ~0.85 GiB instead of ~1.75)
        "-accel", "tcg,thread=multi,tb-size=256", "-cpu", "max",
        "-m", str(settings.memory_mib), "-smp", str(settings.cpus),
        "-nographic", "-no-reboot", "-nic", "none",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        # no_timer_check: on a loaded host the emulated CPU is too slow for the kernel's IO-APIC timer check,
        # which then panics at boot ("IO-APIC + timer doesn't work"); seen with the machine's 2 cores busy
        "-append", "console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check",
        "-drive", f"file={image.root},format=raw,if=virtio,snapshot=on",
        "-drive", f"file={scratch},format=raw,if=virtio",
        "-virtfs", f"local,path={REPO},mount_tag=repo,security_model=none,readonly=on",
        "-virtfs", f"local,path={results},mount_tag=results,security_model=none",
    ]


def make_scratch(directory: Path, size: str) -> Path:
    """A sparse ext4 disk made on the host (fast there); the guest mounts it at /scratch."""
    scratch = directory / "scratch.img"
    subprocess.run(["truncate", "-s", size, scratch], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "scratch", scratch], check=True)
    return scratch


def write_request(results: Path, mode: str, args: list[str], budget: float) -> None:
    """What boot-inside.sh reads: the mode, the seconds its run may take, and the arguments (NUL-ended):
    pytest's for mode=pytest, the command line for mode=command."""
    (results / "request").write_text(f"mode={mode}\nbudget={int(budget)}\n")
    (results / "args").write_bytes(b"".join(arg.encode() + b"\0" for arg in args))


def boot(image: Image, settings: Settings, mode: str, args: list[str], interactive: bool = False) -> float:
    """Boot once; returns the seconds it took. The serial console lands in results/serial.log."""
    results = settings.results
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    # pytest inside stops (and still writes its junit XML) a minute before QEMU is killed
    write_request(results, mode, args, max(settings.timeout - 60, 30))
    with tempfile.TemporaryDirectory(prefix="convoy-guest-") as tmp:
        command = qemu_command(image, settings, make_scratch(Path(tmp), settings.scratch_size), results)
        started = time.monotonic()
        if interactive:
            subprocess.run(command, check=False)
        else:
            run_with_deadline(command, results / "serial.log", settings)
        return time.monotonic() - started


def run_with_deadline(command: list[str], serial_log: Path, settings: Settings) -> None:
    with open(serial_log, "wb") as log:
        qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert qemu.stdout is not None
        out = qemu.stdout

        def copy() -> None:
            for line in iter(out.readline, b""):
                log.write(line)
                log.flush()
                if settings.console:
                    sys.stdout.write(line.decode(errors="replace"))
                    sys.stdout.flush()
                if (lockup := _SOFT_LOCKUP.search(line)) and int(lockup.group(1)) >= WEDGED_AFTER:
                    log.write(f"\n{WEDGED_MARK} (a soft lockup of {int(lockup.group(1))}s), QEMU killed\n".encode())
                    qemu.kill()
                    return

        copier = threading.Thread(target=copy, daemon=True)
        copier.start()
        try:
            qemu.wait(timeout=settings.timeout)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
            log.write(f"\nCONVOY-GUEST-HOST: deadline of {settings.timeout:.0f}s passed, QEMU killed\n".encode())
        copier.join(timeout=10)


def wedged(serial_log: Path) -> bool:
    """The boot was stopped because its emulated CPUs wedged (run_with_deadline)."""
    return serial_log.exists() and WEDGED_MARK.encode() in serial_log.read_bytes()


def failures_in(junit: Path) -> list[str]:
    """'test id: first line of the message' of each failed or errored test case in a junit XML."""
    if not junit.exists():
        return []
    found = []
    # our own pytest wrote it, in our own guest: not untrusted input
    for case in ElementTree.parse(junit).iter("testcase"):  # noqa: S314
        for problem in [*case.findall("failure"), *case.findall("error")]:
            message = (problem.get("message") or "").strip().splitlines()
            found.append(f"{case.get('classname')}::{case.get('name')}: {message[0] if message else problem.tag}")
    return found


def tail(path: Path, lines: int) -> str:
    if not path.exists():
        return f"({path} is missing)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def pytest_summary(log: Path) -> str:
    """The end of pytest's own output: from its short summary (or its last line) on."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    starts = [i for i, line in enumerate(lines) if "short test summary info" in line]
    return "\n".join(lines[starts[-1]:] if starts else lines[-1:])


def with_default_paths(pytest_args: list[str]) -> list[str]:
    """The arguments, plus the inside suite when none of them names a test path (`-v`, `-k thin`...)."""
    names_a_path = any((REPO / arg.split("::")[0]).exists() for arg in pytest_args if not arg.startswith("-"))
    return pytest_args if names_a_path else [*pytest_args, *DEFAULT_ARGS]


def run_pytest(image: Image, pytest_args: list[str], settings: Settings | None = None) -> GuestRun:
    """Boot, run pytest inside on `pytest_args` (default: the inside suite), print its summary.
    A boot whose emulated CPUs wedge is made once more (see WEDGED_AFTER)."""
    settings = settings or Settings.from_env()
    seconds = boot(image, settings, "pytest", with_default_paths(pytest_args))
    if wedged(settings.results / "serial.log"):
        kept = settings.results.with_name(settings.results.name + "-wedged")
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(settings.results, kept)
        print(f"guest: the emulated CPUs wedged (soft lockup past {WEDGED_AFTER}s); booting once more; "
              f"that boot's logs are in {kept}")
        seconds += boot(image, settings, "pytest", with_default_paths(pytest_args))
    run = collected(settings, seconds, "pytest")
    if run.reported:
        run.failures = failures_in(run.junit)
        print(pytest_summary(settings.results / "pytest.log"))
    print(f"guest: {run.outcome}; junit, pytest.log and serial.log in {settings.results}")
    return run


def run_command(image: Image, command: list[str], settings: Settings | None = None) -> GuestRun:
    """Boot, run `command` (paths relative to the repository, which is the guest's working directory)
    as root inside; its output lands in results/output.log, anything it writes into /results beside it."""
    settings = settings or Settings.from_env()
    run = collected(settings, boot(image, settings, "command", command), command[0])
    print(f"guest: {run.outcome}; output.log and serial.log in {settings.results}")
    return run


def collected(settings: Settings, seconds: float, what: str) -> GuestRun:
    """The run's exit status from the results directory, or HARNESS_FAILED (with the console's tail printed)."""
    status_file = settings.results / "exit-status"
    run = GuestRun(status=HARNESS_FAILED, results=settings.results, seconds=seconds)
    if status_file.exists():
        run.status = int(status_file.read_text().strip())
        run.reported = True
        run.outcome = f"{what} exit {run.status} after {seconds:.0f}s"
    else:
        print(f"guest: no exit status from {what} (guest hung, crashed or ran out of time); serial console tail:\n"
              f"{tail(run.serial_log, 40)}")
        run.outcome = f"exit {run.status} after {seconds:.0f}s: no status from the guest"
    return run


def run_shell(image: Image) -> int:
    """A root shell in the guest on this terminal, with /repo, /results and /scratch mounted as for the tests."""
    settings = Settings.from_env()
    boot(image, settings, "shell", [], interactive=True)
    return 0
