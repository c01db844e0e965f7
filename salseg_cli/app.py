"""The Typer app, its global options, and the error handling every subcommand shares.

Each subcommand lives in ``salseg_cli/commands/<name>.py`` and registers itself on ``app`` (or on ``bench_app``);
``salseg_cli.main`` imports every module of that package.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import typer
from rich.console import Console
from rich.logging import RichHandler
from typer.core import TyperCommand, TyperGroup

from salseg.errors import SalsegError
from salseg.results import resolve_root

console = Console()
err_console = Console(stderr=True)


class SalsegGroup(TyperGroup):
    """Turns library errors into one red line and an exit code; never a traceback for user errors."""

    def list_commands(self, ctx):  # keep the pipeline order in --help
        return list(self.commands)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SalsegError as e:
            err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:  # a write outside salseg.fileio: full disk, permissions, read-only file system
            from salseg.fileio import resource_error

            mapped = resource_error(e, e.filename or "?")
            if mapped is None:
                raise
            err_console.print(f"[bold red]error:[/bold red] {mapped}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/bold red] (finished files are kept; partial ones removed)")
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=SalsegGroup,
    help="salseg: plan, train, predict, evaluate and test medical image segmentation with context modules.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
bench_app = typer.Typer(cls=SalsegGroup, help="Benchmarks: training grids, efficiency, robustness.",
                        no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(bench_app, name="bench")

_state: dict = {"root": None}


def root_dir() -> Path:
    """The data root chosen by ``--root``, ``$SALSEG_ROOT`` or ``./salseg_data``."""
    return resolve_root(_state["root"])


def set_root(root: Optional[Path]) -> None:
    _state["root"] = root


@app.callback()
def _main(
    root: Optional[Path] = typer.Option(None, "--root", help="Data root (else $SALSEG_ROOT, else ./salseg_data).",
                                        file_okay=False),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logging."),
) -> None:
    set_root(root)
    setup_logging(verbose)


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logger = logging.getLogger("salseg")
    logger.setLevel(level)
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def parse_options(items: Sequence[str]) -> dict:
    """``["features=32", "scale=paper"]`` -> {"features": 32, "scale": "paper"} (values read as JSON when they parse)."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--option expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_fold(value: str, option: str = "--fold") -> int | str:
    """A fold number or ``all``."""
    if value == "all":
        return "all"
    if not value.isdigit():
        fail(f"{option} takes fold numbers or 'all', got {value!r}")
    return int(value)


def fail(message: str, code: int = 2) -> None:
    """Stop a command for a usage error found by the CLI itself."""
    raise SalsegError(message, exit_code=code)


def expand_multi_values(args: Sequence[str], options: Sequence[str]) -> list[str]:
    """Rewrite ``--opt a b c`` as ``--opt a --opt b --opt c`` for the given option names.

    Values are the tokens after the option up to the next token that starts with ``-`` (negative numbers count
    as values); ``--opt=a b`` works too. Positional arguments must therefore come before such an option.
    """
    out: list[str] = []
    current: str | None = None
    for tok in args:
        name = tok.split("=", 1)[0] if tok.startswith("--") else tok
        if name in options:
            current = name
            out.append(tok)
            need_value = "=" not in tok
            continue
        if current is not None:
            is_value = not tok.startswith("-") or _is_number(tok)
            if need_value:
                out.append(tok)
                need_value = False
                continue
            if is_value:
                out += [current, tok]
                continue
            current = None
        out.append(tok)
    return out


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def multi_value_command(*options: str) -> type[TyperCommand]:
    """A Typer command class whose listed ``List`` options take space-separated values (``--labels 1 2 3``)."""

    class MultiValueCommand(TyperCommand):
        def parse_args(self, ctx, args):
            return super().parse_args(ctx, expand_multi_values(args, options))

    return MultiValueCommand



__all__ = ["expand_multi_values", "multi_value_command", "parse_fold", "parse_options", "app", "bench_app", "console", "err_console", "fail", "root_dir"]
