"""Write docs/cli.md, the `convoy` command reference, from the command tree itself.

    .venv/bin/python -m app.cli.docs > docs/cli.md

Walks the click commands typer builds from `app.cli.main`, so the page says
exactly what `--help` says: each command's usage, help, arguments and
options with their defaults and environment variables. Typer 0.2x builds
them on its own copy of click (`typer._click`), so this module looks at what
they do (`list_commands`, `param_type_name`), not at click's classes. A test
(tests/core/test_cli_docs.py) fails when docs/cli.md differs from this
output, naming the command above.
"""

from __future__ import annotations

from typing import Any

import typer

REGENERATE = ".venv/bin/python -m app.cli.docs > docs/cli.md"


def _usage(command: Any, ctx: Any) -> str:
    pieces = [ctx.command_path]
    params = command.get_params(ctx)
    if any(p.param_type_name == "option" for p in params):
        pieces.append("[OPTIONS]")
    for param in params:
        if param.param_type_name == "argument":
            name = (param.name or "").upper()
            name += "..." if param.nargs == -1 else ""
            pieces.append(name if param.required else f"[{name}]")
    if _is_group(command):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _params_table(command: Any, ctx: Any) -> list[str]:
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or param.name == "help":
            continue
        names, meaning = record
        if param.param_type_name == "argument":
            names = (param.name or "").upper()
        rows.append(f"| `{_cell(names)}` | {_cell(meaning)} |")
    if not rows:
        return []
    return ["| argument / option | meaning |", "|---|---|", *rows, ""]


def _anchor(path: str) -> str:
    return path.replace(" ", "-")


def _sections(command: Any, ctx: Any) -> list[str]:
    lines = [f"## {ctx.command_path}", "", "```", _usage(command, ctx), "```", ""]
    if command.help:
        lines += [command.help.strip(), ""]
    lines += _params_table(command, ctx)
    if not _is_group(command):
        return lines
    children = [(name, command.get_command(ctx, name)) for name in command.list_commands(ctx)]
    visible = [(name, child) for name, child in children if child is not None and not child.hidden]
    lines += ["| command | what it does |", "|---|---|"]
    for name, child in visible:
        lines.append(f"| [`{name}`](#{_anchor(f'{ctx.command_path} {name}')}) | {_cell(child.get_short_help_str(200))} |")
    lines.append("")
    for name, child in visible:
        lines += _sections(child, child.context_class(child, info_name=name, parent=ctx))
    return lines


def render(app: typer.Typer, name: str = "convoy") -> str:
    command = typer.main.get_command(app)
    header = [
        f"# The `{name}` command",
        "",
        f"Generated from the CLI itself: do not edit; run `{REGENERATE}` after changing a command",
        "(tests/core/test_cli_docs.py fails while this page is stale). Exit codes and examples:",
        "[README.md](../README.md#the-cli).",
        "",
    ]
    return "\n".join(header + _sections(command, command.context_class(command, info_name=name))).rstrip() + "\n"


def main() -> None:
    from app.cli.main import assemble

    print(render(assemble()), end="")


if __name__ == "__main__":
    main()
