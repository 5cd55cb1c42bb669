"""The commands a script calls most, answered without typer.

Importing typer (and the click it carries) costs more than the rest of a
`convoy list` together: on a slow machine 0.11 s of a 0.17 s command, where
the interpreter's own start is 0.05 s. These command lines are plain enough
to read by hand:

    [--socket PATH] list [--json]
    [--socket PATH] inspect NAME [--json]
    [--socket PATH] info [--json]
    [--socket PATH] snapshot create VOLUME [--name NAME] [--json]
    [--socket PATH] backup create SNAPSHOT --dest URL [--s3-endpoint URL] [--name NAME] [--json]
    [--socket PATH] snapshot list [VOLUME] [--json]
    [--socket PATH] backup list DEST [--volume-name NAME] [--s3-endpoint URL] [--json]
    [--socket PATH] job list [--json]

`parse` reads exactly these, with options before, between or after the
arguments and `--option=value` as click takes them; anything else (help, a
missing or extra argument, an unknown option, a value that looks like an
option, shell completion) is left to typer, so its help and its usage errors
are the only ones there are. A command read here runs the same function its
typer command runs (app/cli/commands.py) under the same error handling.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from app.cli import commands
from app.cli.context import state, user_errors


class Shape(NamedTuple):
    """One command's line: its positional arguments (`optional`: those after them that may be left out, None
    then) and its options that take a value (besides --json).

    NamedTuples, not dataclasses: importing dataclasses (and the inspect it imports) costs a fifth of this path.
    """

    run: Callable[..., None]
    arguments: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()


SHAPES: dict[tuple[str, ...], Shape] = {
    ("list",): Shape(commands.list_volumes),
    ("inspect",): Shape(commands.inspect_volume, arguments=("name",)),
    ("info",): Shape(commands.show_info),
    ("snapshot", "create"): Shape(commands.create_snapshot, arguments=("volume",), options=("--name",)),
    ("backup", "create"): Shape(
        commands.create_backup, arguments=("snapshot",), options=("--dest", "--s3-endpoint", "--name"), required=("--dest",)
    ),
    ("snapshot", "list"): Shape(commands.list_snapshots, optional=("volume",)),
    ("backup", "list"): Shape(commands.list_backups, arguments=("dest",), options=("--volume-name", "--s3-endpoint")),
    ("job", "list"): Shape(commands.list_jobs),
}


class Call(NamedTuple):
    """A command line read: the socket it names (None: the environment's or the default), what to run, with what."""

    socket: str | None
    run: Callable[..., None]
    kwargs: dict[str, object]


def _take_value(word: str, name: str, rest: list[str]) -> str | None:
    """The value of `name` given as `name=value` or as the next word; None when typer should judge it."""
    if word.startswith(name + "="):
        return word[len(name) + 1 :]
    if not rest or rest[0].startswith("-"):
        return None
    return rest.pop(0)


def parse(argv: list[str]) -> Call | None:
    """The call `argv` asks for, or None for typer to read it."""
    if "_CONVOY_COMPLETE" in os.environ:
        return None
    words = list(argv)
    socket = None
    while words and (words[0] == "--socket" or words[0].startswith("--socket=")):
        socket = _take_value(words.pop(0), "--socket", words)
        if socket is None:
            return None
    key = next((key for key in SHAPES if tuple(words[: len(key)]) == key), None)
    if key is None:
        return None
    shape, rest = SHAPES[key], words[len(key) :]
    values: dict[str, str] = {}
    arguments: list[str] = []
    as_json = False
    while rest:
        word = rest.pop(0)
        name = word.split("=", 1)[0]
        if word == "--json" and not as_json:
            as_json = True
        elif name in shape.options and name not in values:
            value = _take_value(word, name, rest)
            if value is None:
                return None
            values[name] = value
        elif word.startswith("-"):  # --help, -h, --, an unknown option, an option given twice
            return None
        else:
            arguments.append(word)
    names = shape.arguments + shape.optional
    if not len(shape.arguments) <= len(arguments) <= len(names) or any(name not in values for name in shape.required):
        return None
    kwargs: dict[str, object] = {name: arguments[i] if i < len(arguments) else None for i, name in enumerate(names)}
    kwargs.update({name[2:].replace("-", "_"): values.get(name) for name in shape.options})
    kwargs["as_json"] = as_json
    return Call(socket, shape.run, kwargs)


def run(call: Call) -> None:
    """Run a call as its typer command would: errors become one line on stderr and SystemExit(code)."""
    # click reads --socket's CONVOY_SOCKET only when the option is not given, and an empty one as unset
    state["socket"] = call.socket if call.socket is not None else (os.environ.get("CONVOY_SOCKET") or None)
    user_errors(call.run)(**call.kwargs)
