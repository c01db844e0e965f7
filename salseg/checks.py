"""Value checks shared by every reader of a recipe (the CLI's options, plans.json, TrainSettings, the registry's
factory options): numbers are finite, sizes are positive integers and multiples of a network's stride. Each raises
:class:`~salseg.errors.ConfigError` naming where the value came from (``what``: an option or a file's field) — never
a silent rounding."""

from __future__ import annotations

import math
from typing import Sequence

from salseg.errors import ConfigError


def finite(value, what: str) -> float:
    """``value`` as a float; NaN, +-inf and non-numbers are refused naming ``what``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: {value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(out):
        raise ConfigError(f"{what}: {value!r} is not a finite number")
    return out


def positive_int(value, what: str) -> int:
    """An integer >= 1 (a float such as 96.0 or a bool is refused: a size is written as an integer)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what}: {value!r} is not a positive integer")
    return int(value)


def patch_sizes(values: Sequence, what: str = "--patch-size") -> tuple[int, ...]:
    """A patch size: one positive integer per axis."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ConfigError(f"{what}: expected one positive integer per axis, got {values!r}")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ConfigError(f"{what}: {' '.join(map(str, values))} must be positive integers, one per axis "
                          f"(not {', '.join(map(str, bad))})")
    return tuple(int(v) for v in values)


def nearest_multiples(size: int, stride: int) -> list[int]:
    """The multiples of ``stride`` just below and above ``size`` (positive only), nearest first."""
    lo, hi = size // stride * stride, -(-size // stride) * stride
    out = sorted({m for m in (lo, hi) if m >= stride}, key=lambda m: (abs(m - size), m))
    return out or [stride]


def check_multiple(patch: Sequence[int], stride: Sequence[int], what: str, whose: str = "the network") -> None:
    """Refuse a patch size with an axis that is not a multiple of ``stride`` (per axis), naming the value, the
    stride and the nearest valid sizes."""
    patch, stride = [int(p) for p in patch], [int(s) for s in stride]
    if not any(p % s for p, s in zip(patch, stride)):
        return
    near = [nearest_multiples(p, s) for p, s in zip(patch, stride)]
    lower = [n[0] if len(n) == 1 else min(n) for n in near]
    upper = [max(n) for n in near]
    options = " or ".join(" ".join(map(str, c)) for c in dict.fromkeys((tuple(lower), tuple(upper))))
    raise ConfigError(f"{what}: patch size {' '.join(map(str, patch))} is not a multiple of the total stride "
                      f"{' '.join(map(str, stride))} (per axis) of {whose}; nearest valid: {options} (no silent "
                      f"rounding)")
