"""The schedule's pure rules: durations, cron, keep specs, slots and restic's keep rule."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import InvalidInput
from app.schedule.retention import kept, spare_last_good
from app.schedule.spec import Keep, Timing, parse_every, parse_keep, parse_timing


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("90m", 5400), ("1d12h", 129600), ("2w", 1209600)])
def test_every_reads_durations(text, seconds):
    assert parse_every(text) == seconds
    assert parse_every(str(Timing(every=seconds)).removeprefix("every ")) == seconds  # as shown, read back


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "1h 5", "-1h", "30s", "400d", "1.5h"])
def test_every_refuses_what_is_not_a_duration_of_a_minute_or_more(text):
    with pytest.raises(InvalidInput, match="--every"):
        parse_every(text)


@pytest.mark.parametrize("text", ["61 * * * *", "* * *", "0 3 * * * *", "every day", "0 25 * * *"])
def test_cron_refuses_bad_expressions_with_an_example(text):
    with pytest.raises(InvalidInput, match='"0 3 \\* \\* \\*"'):
        parse_timing(None, text)


def test_exactly_one_of_every_and_cron():
    for every, cron in [(None, None), ("1h", "0 3 * * *")]:
        with pytest.raises(InvalidInput, match="exactly one of --every"):
            parse_timing(every, cron)


def test_keep_spec():
    assert parse_keep("last=3, daily=7,weekly=4") == Keep(last=3, daily=7, weekly=4)
    assert str(parse_keep("monthly=2,hourly=1")) == "hourly=1,monthly=2"
    for bad, says in [
        ("last", "is not RULE=N"),
        ("yearly=1", "is not RULE=N"),
        ("last=-1", "is not RULE=N"),
        ("last=1,last=2", "twice"),
        ("last=0", "keeps nothing"),
        ("", "keeps nothing"),
    ]:
        with pytest.raises(InvalidInput, match=says):
            parse_keep(bad)


def test_slots_of_an_interval_are_its_multiples_in_utc():
    hourly = Timing(every=3600)
    assert hourly.next_after(at("2026-03-01 10:20:00")) == at("2026-03-01 11:00:00")
    assert hourly.next_after(at("2026-03-01 11:00:00")) == at("2026-03-01 12:00:00")  # strictly after


def test_slots_of_a_cron_expression_are_utc():
    nightly = parse_timing(None, "0 3 * * *")
    assert nightly.next_after(at("2026-03-01 03:00:00")) == at("2026-03-02 03:00:00")
    assert nightly.next_after(at("2026-03-01 01:00:00")) == at("2026-03-01 03:00:00")


def hourly_items(start: str, hours: int) -> list[tuple[str, datetime]]:
    first = at(start)
    return [((first + timedelta(hours=h)).strftime("%m-%d %H"), first + timedelta(hours=h)) for h in range(hours)]


def test_keep_rule_is_restics():
    # a week of hourly items, Thursday 29 October to Wednesday 4 November 2026 (ISO weeks 44 and 45)
    items = hourly_items("2026-10-29 00:00", 7 * 24)
    assert kept(items, Keep(last=2)) == {"11-04 23", "11-04 22"}
    assert kept(items, Keep(hourly=3)) == {"11-04 23", "11-04 22", "11-04 21"}
    assert kept(items, Keep(daily=3)) == {"11-04 23", "11-03 23", "11-02 23"}
    assert kept(items, Keep(weekly=3)) == {"11-04 23", "11-01 23"}  # only two weeks there
    assert kept(items, Keep(monthly=2)) == {"11-04 23", "10-31 23"}
    # rules add up; a bucket an item already fills counts for each rule that sees it
    assert kept(items, Keep(last=2, hourly=3, daily=3, weekly=2, monthly=2)) == {
        "11-04 23", "11-04 22", "11-04 21", "11-03 23", "11-02 23", "11-01 23", "10-31 23",
    }


def test_keep_rule_on_irregular_times():
    items = [("a", at("2026-01-05 10:00")), ("b", at("2026-01-05 10:30")), ("c", at("2026-01-07 09:00"))]
    assert kept(items, Keep(hourly=2)) == {"c", "b"}  # a and b share an hour: the newer one
    assert kept(items, Keep(daily=5)) == {"c", "b"}
    assert kept([], Keep(last=3)) == set()


def test_the_last_good_backup_is_never_doomed():
    doomed = [("old", at("2026-01-01 00:00")), ("newer", at("2026-01-02 00:00"))]
    assert spare_last_good(doomed, good={"old", "newer"}) == {"old"}  # the newest good one stays
    assert spare_last_good(doomed, good={"old", "newer", "kept-elsewhere"}) == {"old", "newer"}
    assert spare_last_good(doomed, good={"old"}) == {"newer"}  # "newer" is unreadable: "old", the last good one, stays
    assert spare_last_good(doomed, good=set()) == {"old", "newer"}


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=1, max_value=40 * 24), min_size=1, max_size=60),  # hours between runs
    counts=st.tuples(*[st.integers(min_value=0, max_value=4)] * 5).filter(any),
)
def test_applying_the_rule_after_every_run_keeps_what_applying_it_once_keeps(gaps, counts):
    """A schedule applies its rule after each run, deleting as it goes; that must keep exactly what one
    application to every run would, or a run would delete something a later look keeps."""
    keep = Keep(*counts)
    moment, items = at("2026-01-01 00:00"), []
    for number, gap in enumerate(gaps):
        moment += timedelta(hours=gap)
        items.append((f"run-{number}", moment))
    left: list[tuple[str, datetime]] = []
    for item in items:
        left.append(item)
        still = kept(left, keep)
        left = [entry for entry in left if entry[0] in still]
    assert {entry[0] for entry in left} == kept(items, keep)
