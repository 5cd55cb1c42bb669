"""What every CLI command shares: the daemon's client and the error handling."""

from __future__ import annotations

import functools

import typer

from app.cli.client import ControlClient
from app.cli.output import fail
from app.errors import ConvoyError
from app.settings import DEFAULT_CONTROL_SOCKET

state = {"socket": None}  # set by the top-level --socket option

JsonFlag = typer.Option(False, "--json", help="print JSON for scripts")


def client() -> ControlClient:
    return ControlClient(state["socket"] or DEFAULT_CONTROL_SOCKET)


def user_errors(fn):
    """Turn user-facing errors into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConvoyError as error:
            fail(error)
        except KeyboardInterrupt:
            typer.echo("convoy: interrupted", err=True)
            raise SystemExit(130) from None

    return wrapper
