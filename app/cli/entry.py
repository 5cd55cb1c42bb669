"""`convoy`'s entry point: the quick path for the commands it reads (app/cli/quick.py), typer for the rest."""

from __future__ import annotations

import sys


def main() -> None:
    from app.cli import quick

    call = quick.parse(sys.argv[1:])
    if call is None:
        from app.cli.main import main as typer_main

        return typer_main()
    from app.cli.output import exit_now

    try:
        quick.run(call)
        code: object = 0
    except SystemExit as done:
        code = done.code
    except BrokenPipeError:  # `convoy list | head -1` on a long list: as click ends it, status 1 and no traceback
        code = 1
    exit_now(code)
