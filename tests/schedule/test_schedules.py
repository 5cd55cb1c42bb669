"""Schedules through a real daemon, on a clock the test moves (CONVOY_TEST_CLOCK): no sleeping through hours."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from app.schedule.clock import TEST_CLOCK_ENV
from app.schedule.spec import iso
from tests.core.test_metrics import samples, scrape_control, value
from tests.daemon_harness import cli_json

pytestmark = pytest.mark.needs_root

START = "2026-10-28T23:30:00Z"  # a Wednesday; the first hourly slot is Thursday 29 October 00:00


def clock_daemon(make_daemon, start=START, name="host"):
    daemon = make_daemon(name=name, env={TEST_CLOCK_ENV: start})
    daemon.wait_ready()
    return daemon


def move_clock(daemon, moment, wait=True):
    moment = moment if isinstance(moment, str) else iso(moment)
    status, body = daemon.control("POST", "/test/clock", {"now": moment, "wait": wait})
    assert status == 200, body




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
    daemon.cli(
        "schedule", "create", "noon", "--volume", "db", "--cron", "0 12 * * *", "--dest", store, "--keep", "last=2", check=True
    )

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


def test_runs_missed_while_the_daemon_was_down_run_once_at_start(make_daemon):
    daemon = clock_daemon(make_daemon)
    volume_with_data(daemon, "db")
    daemon.cli("schedule", "create", "hourly", "--volume", "db", "--every", "1h", "--keep", "last=24", check=True)
    daemon.stop()
    daemon.env[TEST_CLOCK_ENV] = "2026-10-29T05:30:00Z"  # down from before 00:00 until after 05:00: six slots missed
    daemon.start()
    move_clock(daemon, "2026-10-29T05:30:00Z")  # waits for the runs due now

    schedule = cli_json(daemon, "schedule", "inspect", "hourly")
    assert (schedule["runs"], schedule["last_run"], schedule["next_run"]) == (1, "2026-10-29T05:30:00Z", "2026-10-29T06:00:00Z")
    assert len(cli_json(daemon, "snapshot", "list", "db")) == 1


def test_two_runs_of_one_schedule_never_overlap_and_a_killed_run_is_made_good(make_daemon, s3_endpoint, s3_bucket):
    from tests.core.silent_endpoint import SilentEndpoint

    with SilentEndpoint() as silent:  # the daemon's S3 endpoint never answers: the first run hangs in its backup
        daemon = make_daemon(env={TEST_CLOCK_ENV: START, "S3_ENDPOINT": silent.url})
        daemon.wait_ready()
        volume_with_data(daemon, "db")
        store = f"s3://{s3_bucket}@us-east-1/x"
        daemon.cli(
            "schedule", "create", "hourly", "--volume", "db", "--every", "1h", "--keep", "last=1", "--dest", store, check=True
        )
        move_clock(daemon, "2026-10-29T00:00:00Z", wait=False)
        assert silent.wait_for_connections(1, 30)
        by_hand = daemon.cli("schedule", "run", "hourly")
        assert by_hand.returncode == 4, by_hand.stderr
        assert "schedule hourly is running already" in by_hand.stderr
        deleting = daemon.cli("schedule", "delete", "hourly")
        assert deleting.returncode == 4 and "schedule hourly is running" in deleting.stderr
        move_clock(daemon, "2026-10-29T01:00:00Z", wait=False)  # the next slots come while the first run hangs
        move_clock(daemon, "2026-10-29T02:00:00Z", wait=False)

        schedule = cli_json(daemon, "schedule", "inspect", "hourly")
        assert schedule["running"] and schedule["runs"] == 0
        assert len(cli_json(daemon, "snapshot", "list", "db")) == 1  # one run started, not three
        daemon.kill9()  # mid-run: its snapshot is made, its backup is not

    daemon.env["S3_ENDPOINT"] = s3_endpoint  # the store answers again
    daemon.start()
    move_clock(daemon, "2026-10-29T02:00:00Z")  # the interrupted slot is still due: it runs at start
    schedule = cli_json(daemon, "schedule", "inspect", "hourly")
    assert (schedule["runs"], schedule["last_success"], schedule["running"]) == (1, "2026-10-29T02:00:00Z", False)
    # the killed run's snapshot was the schedule's all along: keep last=1 deleted it
    assert run_times([s["name"] for s in cli_json(daemon, "snapshot", "list", "db")], "hourly") == {"10-29 02"}
    assert run_times([b["name"] for b in cli_json(daemon, "backup", "list", store)], "hourly") == {"10-29 02"}


def test_a_failed_run_shows_its_error_and_is_retried_at_the_next_slot(make_daemon, tmp_path):
    daemon = clock_daemon(make_daemon)
    volume_with_data(daemon, "db")
    blocked = tmp_path / "store"
    blocked.write_text("a file where the store should be\n")
    daemon.cli(
        "schedule", "create", "hourly", "--volume", "db", "--every", "1h", "--keep", "last=3", "--dest", f"vfs://{blocked}",
        check=True,
    )
    move_clock(daemon, "2026-10-29T00:00:00Z")
    failed = cli_json(daemon, "schedule", "inspect", "hourly")
    assert (failed["runs"], failed["failures"], failed["last_success"]) == (1, 1, None)
    assert failed["last_error_at"] == "2026-10-29T00:00:00Z"
    assert failed["last_error"].startswith("volume db: ") and str(blocked) in failed["last_error"]
    assert failed["next_run"] == "2026-10-29T01:00:00Z"
    assert "failed" in daemon.cli("schedule", "list", check=True).stdout
    by_hand = daemon.cli("schedule", "run", "hourly")  # run now: fails the same way, and says why
    assert by_hand.returncode == 1 and str(blocked) in by_hand.stderr

    blocked.unlink()  # the operator fixes the store; the next slot retries
    move_clock(daemon, "2026-10-29T01:00:00Z")
    retried = cli_json(daemon, "schedule", "inspect", "hourly")
    assert (retried["runs"], retried["failures"], retried["last_success"]) == (3, 2, "2026-10-29T01:00:00Z")
    assert retried["last_error_at"] == "2026-10-29T00:00:00Z"  # the last error stays on show, with its time
    assert retried["backups"] == 1
    assert "ok" in daemon.cli("schedule", "run", "hourly", check=True).stdout


def test_a_volume_created_through_docker_joins_a_schedule(make_daemon, tmp_path):
    daemon = clock_daemon(make_daemon)
    daemon.cli("create", "db", check=True)
    daemon.cli("schedule", "create", "nightly", "--volume", "db", "--cron", "0 3 * * *", "--keep", "daily=7", check=True)
    daemon.docker_ok("Create", {"Name": "web", "Opts": {"schedule": "nightly"}})
    daemon.docker_ok("Create", {"Name": "web", "Opts": {"schedule": "nightly"}})  # Docker's retry: idempotent
    assert cli_json(daemon, "schedule", "inspect", "nightly")["volumes"] == ["db", "web"]
    _, answer = daemon.docker("Create", {"Name": "other", "Opts": {"schedule": "nope"}})
    assert "schedule nope does not exist" in answer["Err"] and "convoy schedule create nope" in answer["Err"]
    assert daemon.cli("inspect", "other").returncode == 3  # nothing was created
    _, answer = daemon.docker("Create", {"Name": "other", "Opts": {"schedule": "nightly", "backup": f"vfs://{tmp_path}?backup=b1&volume=v1"}})
    assert "-o schedule is for a volume created empty" in answer["Err"]

    move_clock(daemon, "2026-10-29T03:00:00Z")
    assert {s["volume"] for s in cli_json(daemon, "snapshot", "list")} == {"db", "web"}
    daemon.cli("delete", "--snapshots", "web", check=True)  # a deleted volume leaves its schedules
    assert cli_json(daemon, "schedule", "inspect", "nightly")["volumes"] == ["db"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--volume", "db", "--every", "5x", "--keep", "last=1"], 2, "--every '5x' is not a duration"),
        (["--volume", "db", "--every", "10s", "--keep", "last=1"], 2, "between 1m and 366d"),
        (["--volume", "db", "--cron", "61 * * * *", "--keep", "last=1"], 2, "not a valid cron expression"),
        (["--volume", "db", "--every", "1h", "--cron", "0 3 * * *", "--keep", "last=1"], 2, "exactly one of --every"),
        (["--volume", "db", "--every", "1h", "--keep", "daily"], 2, "'daily' is not RULE=N"),
        (["--volume", "db", "--every", "1h"], 2, "--keep is required"),
        (["--volume", "db", "--all", "--every", "1h", "--keep", "last=1"], 2, "exactly one of --volume VOL"),
        (["--every", "1h", "--keep", "last=1"], 2, "exactly one of --volume VOL"),
        (["--volume", "nope", "--every", "1h", "--keep", "last=1"], 3, "volume nope does not exist"),
        (["--all", "--driver", "nope", "--every", "1h", "--keep", "last=1"], 2, "nope"),
        (["--volume", "db", "--driver", "vfs", "--every", "1h", "--keep", "last=1"], 2, "--driver picks the volumes of --all"),
        (["--volume", "db", "--every", "1h", "--keep", "last=1", "--dest", "ftp://x"], 2, "ftp://x"),
        (["--volume", "db", "--every", "1h", "--keep", "last=1", "--s3-endpoint", "http://x"], 2, "give --dest too"),
    ],
)
def test_bad_schedules_are_refused_with_what_to_do(make_daemon, args, code, says):
    daemon = make_daemon()
    daemon.cli("create", "db", check=True)
    result = daemon.cli("schedule", "create", "s1", *args)
    assert result.returncode == code, result.stderr
    assert says in result.stderr
    assert cli_json(daemon, "schedule", "list") == []


def test_schedule_commands_on_unknown_or_duplicate_names(make_daemon):
    daemon = make_daemon()
    daemon.cli("create", "db", check=True)
    daemon.cli("schedule", "create", "s1", "--all", "--every", "1h", "--keep", "last=1", check=True)
    duplicate = daemon.cli("schedule", "create", "s1", "--all", "--every", "1h", "--keep", "last=1")
    assert duplicate.returncode == 4 and "schedule s1 already exists" in duplicate.stderr
    for command in ("inspect", "run", "delete"):
        result = daemon.cli("schedule", command, "nope")
        assert result.returncode == 3 and "schedule nope does not exist" in result.stderr, (command, result.stderr)
    assert cli_json(daemon, "schedule", "inspect", "s1")["volumes"] == ["db"]  # --all: every volume
    daemon.cli("schedule", "delete", "s1", check=True)
    assert cli_json(daemon, "schedule", "list") == []
    # without a test clock the daemon does not serve the clock's route
    status, _ = daemon.control("POST", "/test/clock", {"now": START})
    assert status == 404


def test_a_schedule_of_all_volumes_takes_those_created_later(make_daemon):
    daemon = clock_daemon(make_daemon)
    daemon.cli("create", "first", check=True)
    daemon.cli("schedule", "create", "every-vfs", "--all", "--driver", "vfs", "--every", "1h", "--keep", "last=1", check=True)
    daemon.docker_ok("Create", {"Name": "later", "Opts": {"schedule": "every-vfs"}})  # joins anyway: nothing to attach
    daemon.cli("create", "latest", check=True)
    _, answer = daemon.docker("Create", {"Name": "img", "Opts": {"schedule": "every-vfs", "driver": "image"}})
    assert "schedule every-vfs takes the volumes of the vfs back-end" in answer["Err"]

    move_clock(daemon, "2026-10-29T00:00:00Z")
    move_clock(daemon, "2026-10-29T01:00:00Z")
    assert sorted(s["volume"] for s in cli_json(daemon, "snapshot", "list")) == ["first", "later", "latest"]  # keep last=1
    listed = daemon.cli("schedule", "list", check=True).stdout
    assert "every-vfs" in listed and "all (vfs)" in listed and "2026-10-29T02:00:00Z" in listed


def test_each_schedules_last_success_is_a_metric_that_outlives_a_restart_and_goes_with_the_schedule(make_daemon):
    daemon = clock_daemon(make_daemon)
    volume_with_data(daemon, "db")
    daemon.cli("schedule", "create", "snaps", "--volume", "db", "--every", "1h", "--keep", "last=3", check=True)
    gauge = "convoy_schedule_last_success_timestamp_seconds"
    assert (gauge, (("schedule", "snaps"),)) not in samples(scrape_control(daemon)), "no run has succeeded yet"

    move_clock(daemon, "2026-10-29T00:00:00Z")  # the clock stands still during the run: it ends at the slot
    slot = datetime(2026, 10, 29, tzinfo=UTC).timestamp()
    assert value(samples(scrape_control(daemon)), gauge, schedule="snaps") == slot

    daemon.stop()
    daemon.start()
    daemon.wait_ready()
    assert value(samples(scrape_control(daemon)), gauge, schedule="snaps") == slot, "read back from the catalog at start"

    daemon.cli("schedule", "delete", "snaps", check=True)
    assert (gauge, (("schedule", "snaps"),)) not in samples(scrape_control(daemon))
