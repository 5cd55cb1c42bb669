"""Which of a schedule's snapshots or backups its keep rule keeps: restic's `forget --keep-*`.

Newest first, each rule keeps an item when the item opens a bucket the rule
has not seen yet (last: every item; hourly: its hour; daily: its day;
weekly: its ISO week; monthly: its month), until the rule has kept its
count. An item is kept when any rule keeps it. Times are UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import datetime

from app.schedule.spec import KEEP_RULES, Keep

_BUCKETS: dict[str, Callable[[datetime, int], Hashable]] = {
    "last": lambda moment, position: position,
    "hourly": lambda moment, position: (moment.year, moment.month, moment.day, moment.hour),
    "daily": lambda moment, position: moment.date(),
    "weekly": lambda moment, position: moment.isocalendar()[:2],
    "monthly": lambda moment, position: (moment.year, moment.month),
}


def kept(items: Sequence[tuple[str, datetime]], keep: Keep) -> set[str]:
    """The ids of `(id, time)` items that `keep` keeps."""
    remaining = {rule: getattr(keep, rule) for rule in KEEP_RULES}
    last_bucket: dict[str, Hashable] = {}
    keeping: set[str] = set()
    newest_first = sorted(items, key=lambda item: (item[1], item[0]), reverse=True)
    for position, (item_id, moment) in enumerate(newest_first):
        for rule in KEEP_RULES:
            if remaining[rule] <= 0:
                continue
            bucket = _BUCKETS[rule](moment, position)
            if rule not in last_bucket or last_bucket[rule] != bucket:
                last_bucket[rule] = bucket
                remaining[rule] -= 1
                keeping.add(item_id)
    return keeping


def spare_last_good(doomed: Sequence[tuple[str, datetime]], good: set[str]) -> set[str]:
    """What may go of `doomed` when `good` is every intact backup of the volume: never all of them.

    When the doomed would take every good backup with them, the newest good one among them stays.
    """
    doomed_ids = {item_id for item_id, _ in doomed}
    if not good or not good <= doomed_ids:
        return doomed_ids
    newest_good = max((item for item in doomed if item[0] in good), key=lambda item: (item[1], item[0]))
    return doomed_ids - {newest_good[0]}
