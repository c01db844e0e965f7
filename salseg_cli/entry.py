"""The ``salseg`` executable: imports only the module of the command being run (a Typer app of every command costs
seconds of imports: torch, scipy.stats, batchgenerators), all of them for top-level help, shell completion or a
name that is no command (click then lists or suggests the real ones)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from typing import Sequence

import salseg_cli.commands as _commands
from salseg_cli.app import app

ORDER = ["synth", "convert", "check", "plan", "preprocess", "train", "predict", "export_model", "install_model",
         "evaluate", "stats", "bench", "quickstart", "list"]
OTHER_HOMES = {"postprocess": "ensemble"}  # commands registered by another command's module
BENCH_PREFIX = "bench_"                      # the modules of `salseg bench ...`
VALUE_OPTIONS = ("--root",)                  # global options that take a value (salseg_cli.app._main)


def command_modules() -> list[str]:
    """Every module of salseg_cli.commands, in the pipeline order of --help."""
    names = [m.name for m in pkgutil.iter_modules(_commands.__path__)]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def command_name(argv: Sequence[str]) -> str | None:
    """The subcommand of a command line (after the global options), or None."""
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if not a.startswith("-"):
            return a
        i += 2 if a in VALUE_OPTIONS else 1
    return None


def modules_for(argv: Sequence[str]) -> list[str]:
    """The command modules a command line needs: its subcommand's, else all."""
    every = command_modules()
    name = command_name(argv)
    if name is None or any(k.endswith("_COMPLETE") for k in os.environ if k.startswith("_SALSEG")):
        return every
    if name == "bench":
        return [m for m in every if m.startswith(BENCH_PREFIX)]
    module = OTHER_HOMES.get(name, name.replace("-", "_"))
    return [module] if module in every and not module.startswith(BENCH_PREFIX) else every


def load_commands(modules: Sequence[str] | None = None) -> None:
    """Import command modules (each registers itself on ``app``); None = all."""
    for name in command_modules() if modules is None else modules:
        importlib.import_module(f"{_commands.__name__}.{name}")


def main(argv: Sequence[str] | None = None) -> None:
    load_commands(modules_for(sys.argv[1:] if argv is None else argv))
    app(args=None if argv is None else list(argv))
