"""What other parts of the daemon hear of schedule runs.

`on_run_finished` is the one place a run's outcome leaves the schedule
code: the metrics (last successful backup time per schedule) hook in here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from app.schedule.spec import parse_iso

log = logging.getLogger(__name__)


def on_run_finished(schedule: str, ok: bool, when: datetime) -> None:
    """Called once after every run of `schedule` (by its slot or by `convoy schedule run`), `when` it finished."""
    log.debug("schedule %s run finished at %s: %s", schedule, when.isoformat(), "ok" if ok else "failed")
    if ok:
        from app import metrics  # the daemon's alone: the CLI never loads prometheus_client

        metrics.schedule_succeeded(schedule, when.timestamp())


def on_deleted(schedule: str) -> None:
    from app import metrics

    metrics.schedule_removed(schedule)


def on_daemon_start(last_successes: Iterable[tuple[str, str | None]]) -> None:
    """The gauge of each schedule's last success, from the catalog: it survives a restart of the daemon
    (a counter may start again at zero; the time of a past success must not vanish)."""
    from app import metrics

    for schedule, last_success in last_successes:
        if last_success:
            metrics.schedule_succeeded(schedule, parse_iso(last_success).timestamp())
