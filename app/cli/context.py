"""What every CLI command shares: the daemon's client and the error handling.

No typer here: the quick path (app/cli/quick.py) answers its commands with these alone.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from app.cli.client import ControlClient
from app.cli.output import fail
from app.control_socket import DEFAULT_CONTROL_SOCKET
from app.errors import ConvoyError

P = ParamSpec("P")
R = TypeVar("R")

state: dict[str, str | None] = {"socket": None}  # set by the top-level --socket option


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
            print("convoy: interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
