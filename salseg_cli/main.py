"""Entry point: imports every subcommand module, then runs the Typer app."""

from __future__ import annotations

import importlib
import pkgutil

import salseg_cli.commands as _commands
from salseg_cli.app import app

_ORDER = ["synth", "convert", "check", "plan", "preprocess", "train", "predict", "export_model", "install_model",
          "evaluate", "stats", "bench",
          "quickstart", "list"]


def _load_commands() -> None:
    names = [m.name for m in pkgutil.iter_modules(_commands.__path__)]
    for name in sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n)):
        importlib.import_module(f"salseg_cli.commands.{name}")


_load_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
