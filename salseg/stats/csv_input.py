"""CSV inputs of ``salseg stats``: a long per-case table ``case,method,value[,metric,label,seed,group]``
(:func:`read_cases`) and a per-baseline table ``dataset,<pair_by>,method,value`` (:func:`read_table`); one reader
(:func:`csv_rows`) gives both the same messages (a byte-order mark is read, errors name the file and the line)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from salseg.errors import DataError
from salseg.stats.load import SIGNED_METRICS, check_seed_coverage


def csv_rows(path, what: str, need: list[str], needs_text: str):
    """(line number, stripped row) of a CSV table; a missing or unreadable file or a missing column is a DataError
    naming the file (``what``: e.g. "case table"; ``needs_text``: the columns the message says it needs)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (spreadsheets write one) is not data
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e})") from None
    reader = csv.DictReader(text.splitlines())
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in need if c not in cols]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(cols) or 'nothing'}; "
                        f"needs {needs_text})")
    for line, row in enumerate(reader, start=2):
        yield line, {(k or "").strip(): (v or "").strip() for k, v in row.items()}


def _number(raw: str, path: Path, line: int, what: str) -> float:
    try:
        return math.nan if raw.lower() in ("", "nan", "na") else float(raw)
    except ValueError:
        raise DataError(f"{path}, line {line}: {what} '{raw}' is not a number") from None


def read_table(path, pair_by: str = "baseline") -> dict[str, dict[str, dict[str, float]]]:
    """dataset -> method -> pair key -> value; errors name the file and the line."""
    path = Path(path)
    need = ["dataset", pair_by, "method", "value"]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for line, row in csv_rows(path, "table", need, ",".join(need)):
        ds, key, method = row["dataset"], row[pair_by], row["method"]
        value = _number(row["value"], path, line, "value")
        slot = table.setdefault(ds, {}).setdefault(method, {})
        if key in slot:
            raise DataError(f"{path}, line {line}: duplicate row for dataset '{ds}', {pair_by} '{key}', "
                            f"method '{method}'")
        slot[key] = value
    if not table:
        raise DataError(f"{path}: no rows")
    return table


def _seed(raw: str, path: Path, line: int) -> int:
    if not raw:
        return 0
    if not raw.lstrip("-").isdigit():
        raise DataError(f"{path}, line {line}: seed '{raw}' is not an integer")
    return int(raw)


def read_cases(path) -> tuple[dict, list[str], dict[str, str]]:
    """(``(metric, label) -> method -> seed -> case -> value``, the methods in order of first appearance,
    case -> group from the optional ``group`` column)."""
    path = Path(path)
    data: dict = {}
    order: list[str] = []
    groups: dict[str, str] = {}
    for line, row in csv_rows(path, "case table", ["case", "method", "value"],
                              "case,method,value and optionally metric,label,seed,group"):
        value = _number(row["value"], path, line, "value")
        metric = (row.get("metric") or "value").lower()
        if metric.strip("|") in SIGNED_METRICS:   # rvd or |rvd|: compared as |value|
            metric, value = metric.strip("|"), abs(value)
        seed = _seed(row.get("seed", ""), path, line)
        key = (metric, (row.get("label") or None))
        method, case = row["method"], row["case"]
        if not method or not case:
            raise DataError(f"{path}, line {line}: empty case or method")
        if row.get("group"):
            if groups.setdefault(case, row["group"]) != row["group"]:
                raise DataError(f"{path}, line {line}: case '{case}' is in group '{row['group']}' here and in "
                                f"'{groups[case]}' before")
        if method not in order:
            order.append(method)
        slot = data.setdefault(key, {}).setdefault(method, {}).setdefault(seed, {})
        if case in slot:
            raise DataError(f"{path}, line {line}: duplicate row for case '{case}', method '{method}'"
                            + (f", metric {key[0]}" if key[0] != "value" else "")
                            + (f", label {key[1]}" if key[1] else "") + (f", seed {seed}" if seed else ""))
        slot[case] = value
    if not data:
        raise DataError(f"{path}: no rows")
    for (metric, label), methods in data.items():
        for method, seeds in methods.items():
            check_seed_coverage(seeds, f"{path}: method '{method}'"
                                + (f" (metric {metric}, label {label})" if metric != "value" or label else ""))
    return data, order, groups
