"""Hold chosen file opens until the test releases them (fanotify permission
events): deterministic races between a test and the daemon, without sleeps."""

import ctypes
import os
import select
import struct
import subprocess
import time
from pathlib import Path

import pytest


class OpenGate:
    """Holds opens of some files until released (fanotify permission events): a deterministic race."""

    FAN_CLOEXEC, FAN_CLASS_CONTENT, FAN_MARK_ADD, FAN_OPEN_PERM, FAN_ALLOW = 0x1, 0x4, 0x1, 0x10000, 0x1
    AT_FDCWD = -100
    EVENT = struct.Struct("IBBHQii")  # struct fanotify_event_metadata

    def __init__(self, *paths: Path):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
        self.fd = libc.fanotify_init(self.FAN_CLOEXEC | self.FAN_CLASS_CONTENT, os.O_RDONLY)
        if self.fd < 0:
            pytest.skip(f"fanotify is not available: {os.strerror(ctypes.get_errno())}")
        for path in paths:
            if libc.fanotify_mark(self.fd, self.FAN_MARK_ADD, self.FAN_OPEN_PERM, self.AT_FDCWD, os.fsencode(path)) != 0:
                os.close(self.fd)
                pytest.skip(f"fanotify permission events are not available: {os.strerror(ctypes.get_errno())}")

    def held(self, timeout: float) -> list[int]:
        """The event fds of opens now waiting (empty after `timeout`)."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return []
        data = os.read(self.fd, 4096)
        events = []
        while data:
            length, _, _, _, _, fd, _ = self.EVENT.unpack_from(data)
            events.append(fd)
            data = data[length:]
        return events

    def allow(self, fds: list[int]) -> None:
        for fd in fds:
            os.write(self.fd, struct.pack("iI", fd, self.FAN_ALLOW))
            os.close(fd)

    def allow_all_until(self, process: subprocess.Popen, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            self.allow(self.held(0.05))

    def close(self) -> None:
        os.close(self.fd)
