"""The whole Typer app: every subcommand module imported (``from salseg_cli.main import app`` in Python and tests).
The ``salseg`` executable (salseg_cli.entry.main) imports only the module of the command it runs."""

from __future__ import annotations

from salseg_cli.app import app
from salseg_cli.entry import load_commands, main

load_commands()

__all__ = ["app", "main"]
