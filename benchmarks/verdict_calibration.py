"""Calibration of salseg's verdicts: simulated studies with a known truth, pushed through the decision `stats` uses.

    python benchmarks/verdict_calibration.py [--studies 400] [--power-studies 100] [--n-boot 200] [--seed 0]

Each study has n cases and k trained runs (seeds) per arm; the value of case c in run r of arm a is

    y[a, r, c] = u_c + delta * [a = method] + v_ar + e_arc,   u_c ~ N(0, 1), v_ar ~ N(0, run_sd^2), e_arc ~ N(0, 1)

(the case SD is the SD of e, 1; a run's offset v shifts all its cases: seed noise). Every study goes through
``salseg.stats.comparison`` and ``salseg.stats.finalize`` -- the function `salseg stats`, `bench run` and the report
use -- and counts as a verdict when it says "better" or "worse". Beside it: the naive paired t-test on each case's
mean over the seeds (p < alpha, no other rule), what salseg did before runs were a unit of replication.

Printed (Markdown): for n in {5, 10, 30, 100}, k in {1, 2, 3, 5} and run SD in {0, 0.5, 1, 2} x the case SD, the
share of "better/worse" verdicts under no difference (delta = 0) with its Monte-Carlo margin (1.96 x the binomial
SE at alpha), and the power at delta = 1x, 2x, 4x the run SD; each cell "salseg / naive". Under no difference
every k >= 2 cell must be <= alpha + margin (checked at the end; exit 1 if not). The defaults run in a few minutes
on one core; n = 5 is below salseg's minimum of 6 units, so it never gives a verdict there.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy import stats

from salseg.stats import comparison, finalize, make_record

NS, KS, RUN_SDS, MULTIPLES = (5, 10, 30, 100), (1, 2, 3, 5), (0.0, 0.5, 1.0, 2.0), (1, 2, 4)
ALPHA = 0.05


def study(rng: np.random.Generator, n: int, k: int, run_sd: float, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """(method, reference) values, runs x cases, of one simulated study."""
    u = rng.normal(0.0, 1.0, n)
    arms = []
    for shift in (delta, 0.0):
        arms.append(u[None, :] + shift + rng.normal(0.0, run_sd, (k, 1)) + rng.normal(0.0, 1.0, (k, n)))
    return arms[0], arms[1]


def salseg_verdict(ym: np.ndarray, yr: np.ndarray, n_boot: int, seed: int) -> str:
    """salseg's verdict on one study: "better", "worse" or "not separable"."""
    cases = [f"c{i:03d}" for i in range(ym.shape[1])]
    as_seeds = [{s: dict(zip(cases, row.tolist())) for s, row in enumerate(y)} for y in (ym, yr)]
    result = comparison(as_seeds[0], as_seeds[1], n_boot=n_boot, seed=seed)
    rec = make_record(dataset="sim", method="m", reference="r", metric="value", label=None, lower_is_better=False,
                      result=result)
    return finalize([rec], "holm", ALPHA)[0]["verdict"]


def naive_verdict(ym: np.ndarray, yr: np.ndarray) -> str:
    """The naive paired t-test on seed means: "better"/"worse" when p < alpha."""
    r = stats.ttest_rel(ym.mean(axis=0), yr.mean(axis=0))
    return "not separable" if not r.pvalue < ALPHA else ("better" if r.statistic > 0 else "worse")


def cell(n: int, k: int, run_sd: float, delta: float, studies: int, n_boot: int, seed: int) -> tuple[float, float]:
    """(salseg's, the naive test's) share of verdicts in ``studies`` simulated studies: "better" or "worse" under no
    difference, the correct "better" when ``delta`` > 0."""
    rng = np.random.default_rng([seed, n, k, int(run_sd * 100), int(delta * 100)])
    ours = naive = 0
    for i in range(studies):
        ym, yr = study(rng, n, k, run_sd, delta)
        hits = ("better",) if delta > 0 else ("better", "worse")
        ours += salseg_verdict(ym, yr, n_boot, i) in hits
        naive += naive_verdict(ym, yr) in hits
    return ours / studies, naive / studies


def margin(studies: int, p: float = ALPHA) -> float:
    return 1.96 * math.sqrt(p * (1 - p) / studies)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=400, help="simulated studies per cell under no difference")
    ap.add_argument("--power-studies", type=int, default=100, help="simulated studies per power cell")
    ap.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples per study")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    m = margin(args.studies)
    print(f"## False better/worse verdicts under no difference (alpha {ALPHA}; {args.studies} studies per cell, "
          f"Monte-Carlo margin ±{m:.3f}; cells: salseg / naive paired t-test on seed means)\n")
    print("| n | k | " + " | ".join(f"run SD {r:g}" for r in RUN_SDS) + " |")
    print("|---|---|" + "---|" * len(RUN_SDS))
    failures = []
    for n in NS:
        for k in KS:
            cells = []
            for r in RUN_SDS:
                ours, naive = cell(n, k, r, 0.0, args.studies, args.n_boot, args.seed)
                cells.append(f"{ours:.3f} / {naive:.3f}")
                if k >= 2 and ours > ALPHA + m:
                    failures.append((n, k, r, ours))
            print(f"| {n} | {k} | " + " | ".join(cells) + " |", flush=True)
    pm = margin(args.power_studies, 0.5)
    print(f"\n## Power: share of correct 'better' verdicts at a true difference of 1x, 2x, 4x the run SD "
          f"({args.power_studies} studies per cell, Monte-Carlo margin at most ±{pm:.3f}; salseg / naive)\n")
    heads = [f"SD {r:g}, {x}x" for r in RUN_SDS if r > 0 for x in MULTIPLES]
    print("| n | k | " + " | ".join(heads) + " |")
    print("|---|---|" + "---|" * len(heads))
    for n in NS:
        for k in KS:
            cells = []
            for r in (r for r in RUN_SDS if r > 0):
                for x in MULTIPLES:
                    ours, naive = cell(n, k, r, x * r, args.power_studies, args.n_boot, args.seed)
                    cells.append(f"{ours:.2f} / {naive:.2f}")
            print(f"| {n} | {k} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.time() - t0:.0f} s. Under no difference every k >= 2 cell is "
          + ("<= alpha + margin." if not failures else
             "NOT within alpha + margin in: " + ", ".join(f"n={n} k={k} run SD {r:g} ({v:.3f})"
                                                        for n, k, r, v in failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
