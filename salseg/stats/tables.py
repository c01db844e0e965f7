"""Table pairing: a CSV with columns ``dataset,<pair_by>,method,value`` (e.g. dataset,baseline,method,value).

For each dataset and each method other than the reference, the method's value is paired with the reference's
value over the ``pair_by`` entries (baselines) present in both, and tested.
"""

from __future__ import annotations

import math
from pathlib import Path

from salseg.errors import DataError
from salseg.stats.load import LOWER_IS_BETTER_METRICS, ResultValues, csv_rows
from salseg.stats.tests import make_record, paired_test


def read_table(path, pair_by: str = "baseline") -> dict[str, dict[str, dict[str, float]]]:
    """dataset -> method -> pair key -> value; errors name the file and the line."""
    path = Path(path)
    need = ["dataset", pair_by, "method", "value"]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for line, row in csv_rows(path, "table", need, ",".join(need)):
        ds, key, method, raw = row["dataset"], row[pair_by], row["method"], row["value"]
        try:
            value = math.nan if raw.lower() in ("", "nan", "na") else float(raw)
        except ValueError:
            raise DataError(f"{path}, line {line}: value '{raw}' is not a number") from None
        slot = table.setdefault(ds, {}).setdefault(method, {})
        if key in slot:
            raise DataError(f"{path}, line {line}: duplicate row for dataset '{ds}', {pair_by} '{key}', "
                            f"method '{method}'")
        slot[key] = value
    if not table:
        raise DataError(f"{path}: no rows")
    return table


def table_records(table: dict, csv_path, reference: str, metric: str, opt) -> list[dict]:
    """Uncorrected records, one per (dataset, method != reference), paired over the ``pair_by`` entries."""
    from salseg.stats.analysis import compare_arms

    records = []
    for ds, methods in table.items():
        if reference not in methods:
            raise DataError(f"{csv_path}: dataset '{ds}' has no rows for the reference method '{reference}' "
                            f"(methods: {', '.join(sorted(methods))})")
        ref = ResultValues(name=reference, dataset=ds, values=methods[reference])
        sides = [ResultValues(name=m, dataset=ds, values=v) for m, v in methods.items() if m != reference]
        records += _records(ref, sides, metric, ds, opt, compare_arms)
    if not records:
        raise DataError(f"{csv_path}: no method other than the reference '{reference}' to compare")
    return records


def _records(ref, sides, metric, ds, opt, compare_arms) -> list[dict]:
    out = []
    for side in sides:
        if set(side.values) & set(ref.values):
            out += compare_arms(ref, [side], metric, None, opt, dataset=ds)
        else:
            result = paired_test([], [], opt.test, n_boot=0)
            out.append(make_record(dataset=ds, method=side.name, reference=ref.name, metric=metric, label=None,
                                   lower_is_better=str(metric).lower() in LOWER_IS_BETTER_METRICS, result=result,
                                   only_in_method=len(side.values), only_in_reference=len(ref.values)))
    return out
