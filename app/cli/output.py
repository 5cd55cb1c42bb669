"""How the CLI shows results and errors: tables for people, JSON for scripts.

The one place where error kinds become exit codes.
"""

from __future__ import annotations

import json
import os
import sys
from typing import NoReturn

from app.errors import ConvoyError
from app.json_types import JSONObject

EXIT_CODES = {
    "error": 1,
    "invalid": 2,
    "not_found": 3,
    "conflict": 4,
    "unavailable": 5,
    "configuration": 6,
    "damaged": 7,
    "cancelled": 8,
}


def exit_code_for(error: ConvoyError) -> int:
    return EXIT_CODES.get(error.kind, 1)


def fail(error: ConvoyError) -> NoReturn:
    """One line on stderr, then a non-zero exit."""
    print(f"convoy: {error}", file=sys.stderr)
    raise SystemExit(exit_code_for(error))


def exit_now(code: object) -> NoReturn:
    """End a command's process as SystemExit(code) would, without the interpreter's teardown.

    Freeing every module at exit costs ~12 ms of a 90 ms `convoy list`, and
    a client command needs none of it: its socket is closed, it starts no
    thread and registers no exit hook; its output is flushed here.
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # SystemExit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`convoy list | head -1`): as Python's own exit, status 120
            status = status or 120
    os._exit(status)


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    for row in [headers, *cells]:
        print("  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip())


def print_fields(data: JSONObject, prefix: str = "") -> None:
    """A nested dict as `key: value` lines, for inspect and info."""
    width = max((len(prefix + k) for k in data), default=0)
    for key, value in data.items():
        if isinstance(value, dict) and value:
            print(f"{prefix}{key}:")
            print_fields(value, prefix + "  ")
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, list) else ("-" if value in (None, "") else value)
            print(f"{prefix}{key.ljust(width - len(prefix))}  {shown}")
