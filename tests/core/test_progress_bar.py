"""What the CLI's progress bar shows a person: bytes, percentage, rate, ETA."""

from app.cli.progress import render


def test_progress_bar_shows_bytes_rate_and_eta():
    line = render({"done_bytes": 512 << 20, "total_bytes": 1 << 30, "rate": 100 << 20, "eta": 65})
    assert "[###############               ]" in line
    assert " 50.0% " in line and "512.0 MiB/1.0 GiB" in line and "100.0 MiB/s" in line and "ETA 1:05" in line


def test_progress_bar_before_the_total_is_known():
    line = render({"done_bytes": 0, "total_bytes": 0, "rate": 0, "eta": None})
    assert "0.0%" in line and "ETA --:--" in line
