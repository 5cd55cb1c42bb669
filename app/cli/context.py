"""What every CLI command shares: the daemon's client and the error handling."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from app.cli.client import ControlClient
from app.cli.output import fail
from app.control_socket import DEFAULT_CONTROL_SOCKET
from app.errors import ConvoyError

P = ParamSpec("P")
R = TypeVar("R")

state: dict[str, str | None] = {"socket": None}  # set by the top-level --socket option

JsonFlag = typer.Option(False, "--json", help="print JSON for scripts")


def client() -> ControlClient:
    return ControlClient(state["socket"] or DEFAULT_CONTROL_SOCKET)


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn user-facing errors into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConvoyError as error:
            fail(error)
        except KeyboardInterrupt:
            typer.echo("convoy: interrupted", err=True)
            raise SystemExit(130) from None

    return wrapper
