"""Schedules through a real daemon, on a clock the test moves (CONVOY_TEST_CLOCK): no sleeping through hours."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from app.schedule.clock import TEST_CLOCK_ENV
from app.schedule.spec import iso

pytestmark = pytest.mark.needs_root

START = "2026-10-28T23:30:00Z"  # a Wednesday; the first hourly slot is Thursday 29 October 00:00


def clock_daemon(make_daemon, start=START, name="host"):
    daemon = make_daemon(name=name, env={TEST_CLOCK_ENV: start})
    daemon.wait_ready()
    return daemon


def move_clock(daemon, moment, wait=True):
    status, body = daemon.control("POST", "/test/clock", {"now": moment if isinstance(moment, str) else iso(moment), "wait": wait})
    assert status == 200, body


def cli_json(daemon, *args):
    result = daemon.cli(*args, "--json")
    assert result.returncode == 0, f"convoy {' '.join(args)}: {result.stderr}"
    return json.loads(result.stdout)


def volume_with_data(daemon, name):
    daemon.cli("create", name, check=True)
    path = daemon.root / "vfs" / name / "data"
    path.write_text("first\n")
    return path


def run_times(names, schedule):
    """The run times ("MM-DD HH") in the names of what `schedule` made (SCHEDULE-YYYYmmddTHHMMSS-hex)."""
    times = set()
    for name in names:
        found = re.fullmatch(re.escape(schedule) + r"-\d{4}(\d\d)(\d\d)T(\d\d)0000-[0-9a-f]{6}", name)
        if found:
            times.add(f"{found[1]}-{found[2]} {found[3]}")
    return times


def test_a_week_of_hourly_runs_keeps_what_the_rule_says(make_daemon, tmp_path):
    daemon = clock_daemon(make_daemon)
    data = volume_with_data(daemon, "db")
    store = f"vfs://{tmp_path / 'store'}"
    created = daemon.cli(
        "schedule", "create", "hourly", "--volume", "db", "--every", "1h", "--dest", store,
        "--keep", "last=2,hourly=3,daily=3,weekly=2,monthly=2", check=True,
    )
    assert created.stdout.strip() == "hourly: next run 2026-10-29T00:00:00Z"
    # another schedule on the same volume and store: the hourly one never deletes what this one keeps
    daemon.cli("schedule", "create", "noon", "--volume", "db", "--cron", "0 12 * * *", "--dest", store, "--keep", "last=2", check=True)

    first = datetime(2026, 10, 29, tzinfo=UTC)
    for hour in range(7 * 24):  # Thursday 29 October to Wednesday 4 November, ISO weeks 44 and 45
        data.write_text(f"hour {hour}\n")
        move_clock(daemon, first + timedelta(hours=hour))

    # newest first: last=2 -> 4 Nov 23h, 22h; hourly=3 -> also 21h; daily=3 -> 4, 3, 2 Nov at 23h;
    # weekly=2 -> 4 Nov 23h (week 45), 1 Nov 23h (week 44); monthly=2 -> 4 Nov 23h, 31 Oct 23h
    expected = {"11-04 23", "11-04 22", "11-04 21", "11-03 23", "11-02 23", "11-01 23", "10-31 23"}
    snapshots = [s["name"] for s in cli_json(daemon, "snapshot", "list", "db")]
    backups = [b["name"] for b in cli_json(daemon, "backup", "list", store, "--volume-name", "db")]
    assert run_times(snapshots, "hourly") == expected
    assert run_times(backups, "hourly") == expected
    assert run_times(snapshots, "noon") == run_times(backups, "noon") == {"11-04 12", "11-03 12"}
    assert len(snapshots) == len(backups) == 9  # nothing else is left behind

    hourly = cli_json(daemon, "schedule", "inspect", "hourly")
    assert (hourly["runs"], hourly["failures"], hourly["last_error"]) == (168, 0, None)
    assert hourly["last_success"] == "2026-11-04T23:00:00Z"
    assert hourly["next_run"] == "2026-11-05T00:00:00Z"
    assert (hourly["snapshots"], hourly["backups"]) == (7, 7)
    # deletes collected the blocks only deleted backups used: the kept ones are whole
    newest = next(b["url"] for b in cli_json(daemon, "backup", "list", store) if b["name"].startswith("hourly-20261104T23"))
    assert "intact" in daemon.cli("backup", "verify", newest, check=True).stdout
