"""What other parts of the daemon hear of schedule runs.

`on_run_finished` is the one place a run's outcome leaves the schedule
code: the metrics (last successful backup time per schedule) hook in here.
"""

from __future__ import annotations

import logging
from datetime import datetime

log = logging.getLogger(__name__)


def on_run_finished(schedule: str, ok: bool, when: datetime) -> None:
    """Called once after every run of `schedule` (by its slot or by `convoy schedule run`), `when` it finished."""
    log.debug("schedule %s run finished at %s: %s", schedule, when.isoformat(), "ok" if ok else "failed")
