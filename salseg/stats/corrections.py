"""Multiple-comparison corrections of p-values: Holm (step-down), Bonferroni, none. NaN p-values are left NaN
and do not count towards the number of comparisons."""

from __future__ import annotations

import math
from typing import Sequence

CORRECTIONS = ("holm", "bonferroni", "none")


def correct(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    method = str(method).lower()
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction '{method}'; choose from {', '.join(CORRECTIONS)}")
    p = [float(x) for x in pvalues]
    valid = [i for i, x in enumerate(p) if not math.isnan(x)]
    out = [math.nan] * len(p)
    m = len(valid)
    if method == "none":
        for i in valid:
            out[i] = p[i]
    elif method == "bonferroni":
        for i in valid:
            out[i] = min(1.0, m * p[i])
    else:  # Holm: p_(k) * (m - k), k = 0.. in ascending order, made monotone, capped at 1
        running = 0.0
        for k, i in enumerate(sorted(valid, key=lambda j: p[j])):
            running = max(running, min(1.0, (m - k) * p[i]))
            out[i] = running
    return out
