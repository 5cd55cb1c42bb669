"""Typer options that several command groups share."""

from __future__ import annotations

import typer

JsonFlag = typer.Option(False, "--json", help="print JSON for scripts")
