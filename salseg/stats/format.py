"""The one way salseg writes p-values and numbers in tables, reports and the CLI.

- a missing value (None or NaN) is ``MISSING`` ("–");
- :func:`p_value`: ``<0.001`` below 0.001, else three decimals (``0.016``, ``0.244``, ``1.000``);
- :func:`num`: a number with a format spec (``num(0.81234) == "0.8123"``, ``num(0.02, "+.3f") == "+0.020"``);
- :func:`mean_sd` and :func:`interval`: ``0.812 ± 0.031`` and ``+0.028 [+0.016, +0.045]``.
"""

from __future__ import annotations

import math

MISSING = "–"
P_FLOOR = 1e-3


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def num(x, fmt: str = ".4f") -> str:
    return MISSING if missing(x) else format(float(x), fmt)


def p_value(p) -> str:
    if missing(p):
        return MISSING
    return f"<{P_FLOOR:g}" if float(p) < P_FLOOR else f"{float(p):.3f}"


def mean_sd(mean, sd, fmt: str = ".4f") -> str:
    return f"{num(mean, fmt)} ± {num(sd, fmt)}"


def interval(value, low, high, fmt: str = "+.4f") -> str:
    return f"{num(value, fmt)} [{num(low, fmt)}, {num(high, fmt)}]"
