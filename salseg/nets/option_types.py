"""Option values typed by what a network factory declares: the annotation of each keyword in its signature
(``width: int | None = None``) says what ``--option width=...`` may hold. An ``int`` option is a size or a count
(a positive integer), a ``float`` a finite number, a ``bool`` true or false, a ``str`` a text; ``None`` where the
annotation allows it. Options the signature does not name (a factory's ``**options``) are left to the factory, but
never NaN or infinity."""

from __future__ import annotations

import math
import types
import typing
from typing import Callable

from salseg.errors import ConfigError


def declared_types(factory: Callable) -> dict[str, tuple]:
    """{keyword: the types its annotation allows} for the factory's annotated keywords."""
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # a plug-in with annotations that do not resolve: nothing declared
        return {}
    out = {}
    for name, hint in hints.items():
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if all(a in (int, float, bool, str, type(None)) for a in args):
            out[name] = tuple(args)
    return out


def _fits(value, allowed: tuple) -> bool:
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return (int in allowed and value >= 1) or (float in allowed and int not in allowed)
    if isinstance(value, float):
        return float in allowed and math.isfinite(value)
    return isinstance(value, str) and str in allowed


def _describe(allowed: tuple) -> str:
    words = {int: "a positive integer", float: "a finite number", bool: "true or false", str: "a text",
             type(None): "null"}
    return " or ".join(words[a] for a in allowed)


def check_option_values(owner: str, factory: Callable, options: dict) -> None:
    """Refuse an option value its declared type does not allow (and NaN/inf anywhere), naming the option, the
    value and what it takes."""
    declared = declared_types(factory)
    for key, value in options.items():
        if key in declared and not _fits(value, declared[key]):
            raise ConfigError(f"--option {key}={_show(value)}: {owner}'s option {key} takes {_describe(declared[key])}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"--option {key}={_show(value)}: not a finite number")


def _show(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
