"""The host side of the guest harness that needs no boot: what it passes to pytest and what it reports back."""

import time

from tests.guest.boot import (
    DEFAULT_ARGS,
    HARNESS_FAILED,
    Settings,
    collected,
    failures_in,
    pytest_summary,
    run_with_deadline,
    wedged,
    with_default_paths,
    write_request,
)

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="1" tests="3">
<testcase classname="tests.guest.inside.test_a" name="test_ok" time="0.1"/>
<testcase classname="tests.guest.inside.test_a" name="test_bad" time="0.1">
  <failure message="assert 1 == 2&#10;more">tb</failure></testcase>
<testcase classname="tests.guest.inside.test_b" name="test_setup" time="0.1"><error message="">tb</error></testcase>
</testsuite></testsuites>"""


def test_the_inside_suite_is_run_unless_a_test_path_is_named():
    assert with_default_paths([]) == DEFAULT_ARGS
    assert with_default_paths(["-k", "thin", "-x"]) == ["-k", "thin", "-x", *DEFAULT_ARGS]
    named = ["tests/drivers", "tests/guest/inside/test_harness_smoke.py::test_what_one_nfs_mount_writes_the_other_reads"]
    assert with_default_paths(["-v", *named]) == ["-v", *named]


def test_failed_and_errored_guest_tests_are_named_with_their_first_message_line(tmp_path):
    (tmp_path / "junit.xml").write_text(JUNIT)
    assert failures_in(tmp_path / "junit.xml") == [
        "tests.guest.inside.test_a::test_bad: assert 1 == 2",
        "tests.guest.inside.test_b::test_setup: error",
    ]
    assert failures_in(tmp_path / "missing.xml") == []


def test_the_summary_is_pytests_own_from_its_short_summary_on(tmp_path):
    log = tmp_path / "pytest.log"
    log.write_text("collected 2\n..F\n=== short test summary info ===\nFAILED x::y\n=== 1 failed, 1 passed ===\n")
    assert pytest_summary(log) == "=== short test summary info ===\nFAILED x::y\n=== 1 failed, 1 passed ==="
    log.write_text("collected 2\n..\n=== 2 passed ===\n")
    assert pytest_summary(log) == "=== 2 passed ==="


def test_pytest_arguments_reach_the_guest_intact(tmp_path):
    write_request(tmp_path, "pytest", ["-k", "a and not b", "tests/x y.py"], 540)
    assert (tmp_path / "request").read_text() == "mode=pytest\nbudget=540\n"
    assert (tmp_path / "args").read_bytes().split(b"\0") == [b"-k", b"a and not b", b"tests/x y.py", b""]


def test_a_command_reaches_the_guest_as_its_own_mode(tmp_path):
    write_request(tmp_path, "command", ["python3", "benchmarks/inside_devicemapper.py", "--size-mib", "64"], 900)
    assert (tmp_path / "request").read_text() == "mode=command\nbudget=900\n"
    assert (tmp_path / "args").read_bytes() == b"python3\0benchmarks/inside_devicemapper.py\0--size-mib\0" b"64\0"


def test_the_guests_exit_status_comes_back_and_none_is_the_harness_failing(tmp_path, capsys):
    settings = Settings(results=tmp_path)
    (tmp_path / "exit-status").write_text("2\n")
    run = collected(settings, 12.4, "python3")
    assert (run.status, run.reported, run.outcome) == (2, True, "python3 exit 2 after 12s")
    (tmp_path / "exit-status").unlink()
    (tmp_path / "serial.log").write_text("Kernel panic - not syncing\n")
    run = collected(settings, 30, "python3")
    assert (run.status, run.reported) == (HARNESS_FAILED, False)
    printed = capsys.readouterr().out
    assert "no exit status from python3" in printed and "Kernel panic" in printed


def fake_console(*lines: str) -> list[str]:
    """A stand-in for QEMU: prints the console lines, then hangs as a wedged guest does."""
    script = "".join(f"echo '{line}'; " for line in lines) + "exec sleep 600"
    return ["sh", "-c", script]


def test_a_guest_whose_cpus_wedge_is_stopped_at_once_and_said_so(tmp_path):
    log = tmp_path / "serial.log"
    started = time.monotonic()
    run_with_deadline(fake_console("[ 292.75] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [exe:667]",
                                   "[ 460.75] watchdog: BUG: soft lockup - CPU#1 stuck for 183s! [containerd:196]"),
                      log, Settings(results=tmp_path, timeout=120))
    assert time.monotonic() - started < 60, "waited for the deadline instead of stopping the wedged guest"
    assert wedged(log) and "a soft lockup of 183s" in log.read_text()


def test_a_short_soft_lockup_is_waited_out(tmp_path):
    log = tmp_path / "serial.log"
    run_with_deadline(fake_console("[ 292.75] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [exe:667]"),
                      log, Settings(results=tmp_path, timeout=3))
    assert not wedged(log) and "deadline of 3s passed" in log.read_text()
