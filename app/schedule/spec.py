"""What a schedule is made of, parsed and checked: when it runs and what it keeps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from app.errors import InvalidInput

MIN_INTERVAL = 60  # seconds: a snapshot (and backup) every few seconds is a mistake, not a schedule
MAX_INTERVAL = 366 * 86400
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d{1,6})([smhdw])")
KEEP_RULES = ("last", "hourly", "daily", "weekly", "monthly")
MAX_KEEP = 100_000


def parse_every(text: str) -> int:
    """`--every 1h`, `90m`, `1d12h`: seconds between runs."""
    spec = text.strip().lower()
    parts = _DURATION.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise InvalidInput(
            f"--every {text!r} is not a duration: write a number and a unit (s, m, h, d, w), "
            "e.g. 30m, 1h, 1d12h"
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise InvalidInput(f"--every {text!r}: the interval must be between 1m and 366d")
    return seconds


def check_cron(expression: str) -> str:
    """A five-field cron expression (minute hour day month weekday), in UTC."""
    from croniter import croniter

    expression = " ".join(expression.split())
    if len(expression.split(" ")) != 5 or not croniter.is_valid(expression):
        raise InvalidInput(
            f"--cron {expression!r} is not a valid cron expression: give five fields, minute hour "
            "day-of-month month day-of-week, in UTC, e.g. \"0 3 * * *\" for 03:00 every day"
        )
    return expression


@dataclass(frozen=True)
class Keep:
    """restic's `forget --keep-*`: the newest N, then the newest in each of the N newest hours, days..."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def __str__(self) -> str:
        return ",".join(f"{rule}={getattr(self, rule)}" for rule in KEEP_RULES if getattr(self, rule))


def parse_keep(text: str) -> Keep:
    """`last=3,daily=7,weekly=4`: at least one rule keeps something."""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        rule, sep, value = part.partition("=")
        rule = rule.strip().lower()
        if not sep or rule not in KEEP_RULES or not value.strip().isdigit():
            raise InvalidInput(
                f"--keep {text!r}: {part!r} is not RULE=N; rules are {', '.join(KEEP_RULES)}, "
                "e.g. --keep last=3,daily=7,weekly=4"
            )
        if rule in counts:
            raise InvalidInput(f"--keep {text!r} gives {rule} twice")
        counts[rule] = int(value)
        if counts[rule] > MAX_KEEP:
            raise InvalidInput(f"--keep {text!r}: {rule} may be at most {MAX_KEEP}")
    if not any(counts.values()):
        raise InvalidInput(
            f"--keep {text!r} keeps nothing: give at least one rule above zero, e.g. --keep last=7 "
            "(a schedule that deleted everything it made would be no backup)"
        )
    return Keep(**counts)


@dataclass(frozen=True)
class Timing:
    """Every N seconds (slots aligned to the epoch, so `--every 1h` runs on the hour), or a cron expression."""

    every: int | None = None
    cron: str | None = None

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after `moment` (UTC)."""
        moment = moment.astimezone(UTC)
        if self.every is not None:
            seconds = int(moment.timestamp()) // self.every * self.every + self.every
            return datetime.fromtimestamp(seconds, UTC)
        from croniter import croniter

        assert self.cron is not None  # noqa: S101 - a Timing has one or the other (parse_timing)
        following: datetime = croniter(self.cron, moment).get_next(datetime)  # strictly after
        return following.astimezone(UTC)

    def __str__(self) -> str:
        return f"every {format_interval(self.every)}" if self.every is not None else f"cron {self.cron} (UTC)"


def format_interval(seconds: int) -> str:
    """5400 -> 1h30m: what parse_every reads back."""
    parts = []
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_timing(every: str | None, cron: str | None) -> Timing:
    if bool(every) == bool(cron):
        raise InvalidInput("give exactly one of --every (e.g. 1h) and --cron (e.g. \"0 3 * * *\")")
    return Timing(every=parse_every(every)) if every else Timing(cron=check_cron(cron or ""))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """A time as this module writes it, or any ISO 8601 time with a zone (a naive one is taken as UTC)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{text!r} is not an ISO 8601 time such as 2026-01-31T03:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
