"""Wait for a daemon job, drawing a progress bar (bytes, rate, ETA) on a terminal."""

from __future__ import annotations

import signal
import sys
import time

from app.cli.client import ControlClient
from app.errors import error_from
from app.json_types import JSONObject

POLL_SECONDS = 0.2  # how often a progress bar is redrawn
QUIET_WAIT_SECONDS = 10.0  # without a bar, the daemon holds each answer until the job ends, up to this


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def render(progress: JSONObject, width: int = 30) -> str:
    done, total = progress.get("done_bytes", 0), progress.get("total_bytes", 0)
    fraction = min(1.0, done / total) if total else 0.0
    bar = "#" * int(fraction * width)
    eta = progress.get("eta")
    eta_text = f"ETA {int(eta) // 60}:{int(eta) % 60:02d}" if eta is not None else "ETA --:--"
    sizes = f"{_human(done)}/{_human(total)}" if total else _human(done)
    return f"[{bar:<{width}}] {fraction * 100:5.1f}% {sizes} {_human(progress.get('rate', 0))}/s {eta_text}"


def run_job(client: ControlClient, path: str, body: JSONObject, show_bar: bool | None = None) -> JSONObject:
    """Start a job and wait for it; its result, or its error raised.

    Ctrl-C stops only the waiting: the job goes on in the daemon, and the
    user is told its ID. Ctrl-C is held back while the job is being started,
    so whenever it comes, the ID is known.
    """
    show_bar = sys.stderr.isatty() if show_bar is None else show_bar
    job = None
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        job = client.request("POST", path, body)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a Ctrl-C held back arrives here
        wait = POLL_SECONDS if show_bar else QUIET_WAIT_SECONDS
        while job["state"] == "running":
            if show_bar:
                print("\r" + render(job["progress"]), end="", file=sys.stderr, flush=True)
            asked = time.monotonic()
            # the daemon answers as soon as the job ends: a short job costs no poll interval
            job = client.request("GET", f"/jobs/{job['id']}", query={"wait": str(wait)})
            if job["state"] == "running" and time.monotonic() - asked < POLL_SECONDS / 2:
                time.sleep(POLL_SECONDS)  # a daemon older than `wait` answers at once: poll, do not spin
    except KeyboardInterrupt:
        if job is None:
            raise
        if show_bar:
            print(file=sys.stderr)
        print(
            f"convoy: stopped waiting; job {job['id']} goes on in the daemon: "
            f"`convoy job inspect {job['id']}` follows it, `convoy job cancel {job['id']}` stops it",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    if show_bar:
        print("\r" + render({**job["progress"], "eta": 0}), file=sys.stderr, flush=True)
    if job["state"] != "done":  # failed, or interrupted by a restart of the daemon while we waited
        raise error_from(job["error"]["kind"], job["error"]["message"])
    result: JSONObject = job["result"]  # a done job's result is an object
    return result
