"""The Typer app, its global options, and the error handling every subcommand shares.

Each subcommand lives in ``salseg_cli/commands/<name>.py`` and registers itself on ``app`` (or on ``bench_app``);
``salseg_cli.main`` imports every module of that package; the ``salseg`` executable (salseg_cli.entry) only
the one it runs.
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


class _FlagMetavar:
    """Plain flags take no value: show no ``<bool>`` type for them in --help."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class SalsegGroup(_FlagMetavar, TyperGroup):
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


ARGUMENT = "ARGUMENT"  # alias target: the value moves to the first positional argument


class SalsegCommand(_FlagMetavar, TyperCommand):
    """Every salseg command: the grammar of docs/cli.md applied at parse time.

    - every ``List`` option takes space-separated values (``--modules none lstmsa``) as well as repeats;
    - ``aliases`` (old -> new spelling) are hidden: accepted, rewritten before parsing; those in ``deprecated``
      print one warning line (``deprecated_aliases``). A target of ``ARGUMENT`` moves the option's value to the first positional argument.
    """

    aliases: dict = {}
    deprecated_aliases: frozenset = frozenset()  # (``deprecated`` is click's own: the command's)
    extra_multi: tuple = ()

    def multi_value_options(self) -> list[str]:
        names = [o for p in self.params if getattr(p, "multiple", False) for o in p.opts]
        return names + [o for o in self.extra_multi if o not in names]

    def collect_usage_pieces(self, ctx):  # hidden (deprecated) arguments stay out of the usage line
        rv = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not getattr(param, "hidden", False):
                rv.extend(param.get_usage_pieces(ctx))
        return rv

    def parse_args(self, ctx, args):
        args = rewrite_aliases(list(args), self.aliases, self.deprecated_aliases, ctx.command_path)
        args = expand_multi_values(args, self.multi_value_options())
        refuse_non_finite(args, self.params)
        return super().parse_args(ctx, args)


def refuse_non_finite(args: Sequence[str], params) -> None:
    """NaN and infinity given to a number option (``--lr inf``, ``--gpu-memory nan``) are refused naming the option,
    before any range check or command sees them."""
    from salseg.checks import finite

    numeric = {o for p in params if _takes_float(p) for o in p.opts}
    for i, tok in enumerate(args):
        if tok == "--":
            break
        name, sep, value = tok.partition("=")
        if name in numeric and (sep or i + 1 < len(args)):
            value = value if sep else args[i + 1]
            if value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
                finite(value, name)


def _takes_float(param) -> bool:
    """Whether an option reads floats (its annotation float, Optional[float] or List[float]; or click's FLOAT)."""
    import typing

    ann = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    todo, seen = [ann], set()
    while todo:
        a = todo.pop()
        if a is float:
            return True
        if a is not None and id(a) not in seen:
            seen.add(id(a))
            todo.extend(typing.get_args(a))
    return type(getattr(param, "type", None)).__name__ in ("FloatParamType", "FloatRange")


def rewrite_aliases(args: list[str], aliases: dict, deprecated=frozenset(), where: str = "salseg") -> list[str]:
    """Replace hidden alias spellings (``--workers``, ``--workers=3``, ``-n3``) by the current ones."""
    out: list[str] = []
    front: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            out += args[i:]
            break
        name, value = tok, None
        if tok.startswith("--") and "=" in tok:
            name, value = tok.split("=", 1)
        elif not tok.startswith("--") and tok[:2] in aliases and len(tok) > 2 and tok[0] == "-":
            name, value = tok[:2], tok[2:]
        if name in aliases:
            new = aliases[name]
            if name in deprecated:
                shown = "the first argument" if new == ARGUMENT else new
                err_console.print(f"[yellow]warning:[/yellow] {name} is deprecated in `{where}`; use {shown} "
                                  f"(the old spelling goes in the next release)", highlight=False, soft_wrap=True)
            if new == ARGUMENT:
                if value is None:
                    value = args[i + 1] if i + 1 < len(args) else ""
                    i += 1
                front.append(value)
            elif value is None:
                out.append(new)
            else:
                out += [f"{new}={value}"] if new.startswith("--") else [new, value]
        else:
            out.append(tok)
        i += 1
    return front + out


def command_class(base: type | None = None, *, aliases: dict | None = None, deprecated=(),
                  multi: tuple = ()) -> type:
    """A SalsegCommand subclass (mixed into ``base`` when given) with these aliases."""
    base = base or SalsegCommand
    bases = (base,) if issubclass(base, SalsegCommand) else (SalsegCommand, base)
    attrs = {"aliases": {**getattr(base, "aliases", {}), **(aliases or {})},
             "deprecated_aliases": frozenset(getattr(base, "deprecated_aliases", ())) | frozenset(deprecated),
             "extra_multi": tuple(getattr(base, "extra_multi", ())) + tuple(multi)}
    return type("SalsegCommand", bases, attrs)


class SalsegTyper(typer.Typer):
    """``typer.Typer`` whose commands are SalsegCommands. ``aliases`` (old -> new) are hidden spellings accepted
    silently (the singular of a plural option), ``deprecated_aliases`` print a deprecation line."""

    def __init__(self, **kwargs):
        kwargs.setdefault("cls", SalsegGroup)
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("pretty_exceptions_enable", False)
        super().__init__(**kwargs)

    def command(self, name=None, *, cls=None, aliases: dict | None = None, deprecated_aliases: dict | None = None,
                **kwargs):
        cls = command_class(cls, aliases={**(aliases or {}), **(deprecated_aliases or {})},
                            deprecated=tuple(deprecated_aliases or ()))
        return super().command(name, cls=cls, **kwargs)


app = SalsegTyper(
    help="salseg: plan, train, predict, evaluate and test medical image segmentation with context modules.",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
bench_app = SalsegTyper(help="Benchmarks: training grids, efficiency, robustness.")
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


CONFIG_HELP = "Plans configuration: 2d, 2.5d or 3d_fullres (default: 2.5d for a slice module, else 2d)."


def run_configuration(config: str | None, module: str, command: str | None = None) -> str:
    """The plans configuration of a run: ``-c`` as given, else 2.5d for a slice (or stack) module (it reads
    neighbouring slices; its folder and config.json say 2.5d) and 2d otherwise. ``command`` (train): a slice module with an
    explicit ``-c 2d`` is refused with it, spelled with ``-c 2.5d``."""
    from salseg.nets import get_module

    try:
        is_slice = get_module(module).kind in ("slice", "stack")  # both read K neighbouring slices
    except SalsegError:
        return config or "2d"  # an unknown module: the command's own check says so
    if config is None:
        return "2.5d" if is_slice else "2d"
    if is_slice and config == "2d" and command:
        fail(f"{module} is a slice module: it trains on neighbouring slices, which the 2.5d configuration is planned "
             f"for (its folder and config.json say 2.5d); train it with: {command} -c 2.5d")
    return config


def parse_fold(value: str, option: str = "--fold") -> int | str:
    """A fold number or ``all``."""
    if value == "all":
        return "all"
    if not value.isdigit():
        fail(f"{option} takes fold numbers or 'all', got {value!r}")
    return int(value)


NETWORK_OPTION_HELP = "The network as an option, for scripts: the same as the NETWORK argument."


def network_params(help: str):
    """The two spellings of one network: the ``NETWORK`` argument (the documented form, ``salseg train ACDC mtunet``)
    and ``-n/--network`` (for scripts). Give the pair to a command's parameters, then :func:`one_network`."""
    return (typer.Argument(None, help=help, show_default=False),
            typer.Option(None, "--network", "-n", help=NETWORK_OPTION_HELP, show_default=False))


def one_network(argument: str | None, option: str | None, required: bool = True) -> str | None:
    """The network given as the ``NETWORK`` argument or as ``-n``; both and different is a usage error."""
    if argument is not None and option is not None and argument != option:
        fail(f"two networks given: {argument!r} (the NETWORK argument) and -n {option!r}; give one")
    network = argument if argument is not None else option
    if network is None and required:
        fail("missing the network: give it as the NETWORK argument or -n NETWORK (`salseg list networks`)")
    return network


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


__all__ = ["ARGUMENT", "SalsegCommand", "SalsegTyper", "command_class", "expand_multi_values", "network_params", "one_network", "rewrite_aliases", "parse_fold", "parse_options", "app", "bench_app", "console", "err_console", "fail", "root_dir"]
