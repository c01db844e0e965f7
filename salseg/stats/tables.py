"""Table pairing: a CSV with columns ``dataset,<pair_by>,method,value`` (e.g. dataset,baseline,method,value).

For each dataset and each method other than the reference, the method's value is paired with the reference's
value over the ``pair_by`` entries (baselines) present in both, and tested.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from salseg.errors import DataError
from salseg.stats.load import LOWER_IS_BETTER_METRICS
from salseg.stats.tests import check_choices, finalize, make_record, paired_test


def read_table(path, pair_by: str = "baseline") -> dict[str, dict[str, dict[str, float]]]:
    """dataset -> method -> pair key -> value; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: table not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    reader = csv.DictReader(text.splitlines())
    need = ["dataset", pair_by, "method", "value"]
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in need if c not in cols]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(cols) or 'nothing'}; "
                        f"needs {','.join(need)})")
    table: dict[str, dict[str, dict[str, float]]] = {}
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
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


def compare_table(csv_path, *, pair_by: str = "baseline", reference: str = "none", test: str = "t",
                  correction: str = "holm", metric: str = "value", alpha: float = 0.05) -> list[dict]:
    """One record per (dataset, method != reference); p-values corrected over all records."""
    check_choices(test, correction)
    table = read_table(csv_path, pair_by)
    lower = str(metric).lower() in LOWER_IS_BETTER_METRICS
    records = []
    for ds, methods in table.items():
        if reference not in methods:
            raise DataError(f"{csv_path}: dataset '{ds}' has no rows for the reference method '{reference}' "
                            f"(methods: {', '.join(sorted(methods))})")
        ref = methods[reference]
        for method, vals in methods.items():
            if method == reference:
                continue
            keys = sorted(set(vals) & set(ref))
            result = paired_test([vals[k] for k in keys], [ref[k] for k in keys], test)
            records.append(make_record(dataset=ds, method=method, reference=reference, metric=metric, label=None,
                                       lower_is_better=lower, result=result,
                                       only_in_method=len(set(vals) - set(ref)),
                                       only_in_reference=len(set(ref) - set(vals))))
    if not records:
        raise DataError(f"{csv_path}: no method other than the reference '{reference}' to compare")
    return finalize(records, correction, alpha)
