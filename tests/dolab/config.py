"""The emulator's settings, its rate-limit counter, and the faults switched on per test (faults and the counter are
not persisted: a restart clears them)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TOKEN = "dop_v1_dolab0000000000000000000000000000000000000000000000000000000000"  # the one Bearer token accepted
# seconds each action takes; "busy": how long a running droplet may keep using a device being detached before the
# detach action errors
DEFAULT_DELAYS = {"attach": 0.3, "detach": 0.3, "resize": 0.3, "busy": 5.0}
RATE_LIMIT = 5000  # DO: requests per hour per token
RATE_WINDOW = 3600


@dataclass
class Settings:
    region: str = "nyc3"
    dev_root: Path = Path("/dev")
    delays: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DELAYS))


class RateLimit:
    """DO's headers: every request counts for an hour; ratelimit-reset is when the oldest one stops counting."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[float] = []

    def count(self) -> tuple[int, int, int]:
        """Count one request; return (limit, remaining, reset epoch)."""
        with self.lock:
            now = time.time()
            self.times = [t for t in self.times if t > now - RATE_WINDOW]
            self.times.append(now)
            return RATE_LIMIT, max(0, RATE_LIMIT - len(self.times)), int(self.times[0] + RATE_WINDOW)


@dataclass
class Faults:
    lock: threading.Lock = field(default_factory=threading.Lock)
    storm_calls: int = 0  # the next N API calls answer 429 too_many_requests, ratelimit-remaining 0
    fail_calls: int = 0  # the next N API calls answer fail_status (a 5xx) instead
    fail_status: int = 500
    fail_only: str = ""  # only calls whose "METHOD /path" starts with this fail ("" = any)
    fail_after_work: bool = False  # the failing calls do their work first: the answer is what is lost
    stick_actions: bool = False  # actions stay in-progress while set
    calls: list[str] = field(default_factory=list)  # every API call received, "METHOD /path", in order

    def take(self, call: str) -> str | None:
        """The fault `call` ("METHOD /path") meets, if any: "storm", "fail" or "fail-after-work"; storms first."""
        with self.lock:
            if self.storm_calls > 0:
                self.storm_calls -= 1
                return "storm"
            if self.fail_calls > 0 and call.startswith(self.fail_only):
                self.fail_calls -= 1
                return "fail-after-work" if self.fail_after_work else "fail"
            return None

    def as_dict(self) -> dict[str, object]:
        with self.lock:
            return {
                "storm_calls": self.storm_calls,
                "fail_calls": self.fail_calls,
                "fail_status": self.fail_status,
                "fail_only": self.fail_only,
                "fail_after_work": self.fail_after_work,
                "stick_actions": self.stick_actions,
            }
