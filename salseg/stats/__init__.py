"""Paired significance tests between results: per case (summary.json files) or per baseline (a CSV table).

Records: ``{dataset, method, reference, metric, label, test, n, n_nan_dropped, only_in_method, only_in_reference,
statistic, p, p_corrected, mean_diff, ci_low, ci_high, mean_method, std_method, mean_reference, std_reference,
lower_is_better, verdict, correction}``; statistic and mean_diff are oriented method minus reference.
"""

from __future__ import annotations

from salseg.errors import DataError
from salseg.stats.corrections import CORRECTIONS, correct
from salseg.stats.load import LOWER_IS_BETTER_METRICS, ResultValues, load_result
from salseg.stats.tables import compare_table, read_table
from salseg.stats.tests import RECORD_KEYS, TESTS, check_choices, finalize, make_record, paired_test


def compare_results(paths, *, metric: str = "dice", label="all", test: str = "t", correction: str = "holm",
                    alpha: float = 0.05) -> list[dict]:
    """The first result is the reference; every other is compared with it on the cases both have."""
    check_choices(test, correction)
    paths = list(paths)
    if len(paths) < 2:
        raise DataError("give at least two results: the reference first, then the method(s) to compare with it")
    sides = [load_result(p, metric, label) for p in paths]
    names = [s.name for s in sides]
    if len(set(names)) < len(names):  # ambiguous short names: fall back to the paths as given
        for s, p in zip(sides, paths):
            s.name = str(p)
    ref = sides[0]
    records = []
    for side in sides[1:]:
        common = sorted(set(side.values) & set(ref.values))
        if not common:
            raise DataError(f"{side.name} and {ref.name} have no case in common ({len(side.values)} vs "
                            f"{len(ref.values)} cases; e.g. '{next(iter(side.values))}' vs "
                            f"'{next(iter(ref.values))}')")
        result = paired_test([side.values[c] for c in common], [ref.values[c] for c in common], test)
        records.append(make_record(
            dataset=side.dataset or ref.dataset, method=side.name, reference=ref.name, metric=str(metric).lower(),
            label=str(label).lower(), lower_is_better=str(metric).lower() in LOWER_IS_BETTER_METRICS, result=result,
            only_in_method=len(set(side.values) - set(ref.values)),
            only_in_reference=len(set(ref.values) - set(side.values))))
    return finalize(records, correction, alpha)


__all__ = ["CORRECTIONS", "LOWER_IS_BETTER_METRICS", "RECORD_KEYS", "ResultValues", "TESTS", "compare_results",
           "compare_table", "correct", "finalize", "load_result", "make_record", "paired_test", "read_table"]
