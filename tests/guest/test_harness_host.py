"""The host side of the guest harness that needs no boot: what it passes to pytest and what it reports back."""

from tests.guest.boot import DEFAULT_ARGS, failures_in, pytest_summary, with_default_paths, write_request

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
    assert (tmp_path / "pytest-args").read_bytes().split(b"\0") == [b"-k", b"a and not b", b"tests/x y.py", b""]
