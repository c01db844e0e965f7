"""One statistics call: comparisons (every method vs the reference, for every metric and label asked), Holm over
the whole family, verdicts, rankings (3 or more methods), warnings and provenance -> one report dict::

    {"records": [...], "ranking": [...], "warnings": [...], "provenance": {...}, "methods": [...]}

Inputs: result folders / summary.json files (:func:`analyse_results`), a long per-case CSV
``case,method,value[,metric,label,seed,group]`` (:func:`analyse_cases`) or a per-baseline table
``dataset,<pair_by>,method,value`` (:func:`analyse_table`); :func:`analyse` chooses among them. Every comparison goes
through :func:`salseg.stats.compare.comparison` (paired test with one seed per arm, mixed model with more).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from salseg.errors import DataError
from salseg.stats.compare import comparison
from salseg.stats.csv_input import read_cases, read_table
from salseg.stats.load import (LOWER_IS_BETTER_METRICS, SIGNED_METRICS, ResultValues, average_seeds, check_label,
                               display_metric, load_arms, load_result, metric_key, result_label_names, result_metrics,
                               seed_sd)
from salseg.stats.provenance import arm_provenance, call_provenance, checkpoint_warnings, protocol_warnings
from salseg.stats.ranking import N_BOOT_RANK, rank_bootstrap
from salseg.stats.tests import N_BOOT, SEED, check_choices, default_tie, finalize, make_record
from salseg.stats.verdicts import ALPHA


class Options:
    """The settings of one call (validated once)."""

    def __init__(self, test="t", correction="holm", alpha=ALPHA, empty="worst", tie=None, n_boot=N_BOOT,
                 n_boot_rank=N_BOOT_RANK, seed=SEED):
        check_choices(test, correction)
        if str(empty).lower() not in ("worst", "nan"):
            raise DataError(f"unknown empty-mask policy '{empty}'; choose from worst, nan")
        if tie is not None and not tie >= 0:
            raise DataError(f"--tie must be >= 0, got {tie}")
        if n_boot < 0 or n_boot_rank < 0:
            raise DataError("--n-boot and --n-boot-rank must be >= 0")
        self.test, self.correction, self.alpha = str(test).lower(), str(correction).lower(), float(alpha)
        self.empty, self.tie, self.n_boot = str(empty).lower(), tie, int(n_boot)
        self.n_boot_rank, self.seed = int(n_boot_rank), int(seed)

    def tie_for(self, metric: str) -> float:
        return default_tie(metric) if self.tie is None else float(self.tie)

    def provenance(self, spacing=(), arms=None) -> dict:
        tie = self.tie if self.tie is not None else {"dice-like": default_tie("dice"), "surface distances (mm)":
                                                     default_tie("hd95")}
        return call_provenance(empty=self.empty, tie=tie, n_boot=self.n_boot, n_boot_rank=self.n_boot_rank,
                               seed=self.seed, test=self.test, correction=self.correction, alpha=self.alpha,
                               spacing_sources=spacing, arms=arms)


def compare_arms(ref: ResultValues, sides: Sequence[ResultValues], metric: str, label, opt: Options,
                 dataset: str = "", dice_sd: dict | None = None, groups: dict | None = None) -> list[dict]:
    """Uncorrected records: each side vs ``ref`` on the cases both have (``groups``: case -> patient; default the
    arms' own, from dataset.json)."""
    lower = str(metric).lower() in LOWER_IS_BETTER_METRICS
    dice_sd = dice_sd or {}
    out = []
    for side in sides:
        if not set(side.values) & set(ref.values):
            raise DataError(f"{side.name} and {ref.name} have no case in common ({len(side.values)} vs "
                            f"{len(ref.values)} cases; e.g. '{next(iter(side.values))}' vs "
                            f"'{next(iter(ref.values))}')")
        result = comparison(side.seeds or {0: side.values}, ref.seeds or {0: ref.values}, test=opt.test,
                            groups=groups if groups is not None else (ref.groups or side.groups),
                            n_boot=opt.n_boot, seed=opt.seed, tie=opt.tie_for(metric), lower_is_better=lower)
        out.append(make_record(
            dataset=dataset or side.dataset or ref.dataset, method=side.name, reference=ref.name,
            metric=display_metric(metric), label=None if label is None else str(label).lower(), lower_is_better=lower,
            result=result, only_in_method=len(set(side.values) - set(ref.values)),
            only_in_reference=len(set(ref.values) - set(side.values)),
            seed_sd_method=side.seed_sd(),
            seed_sd_reference=ref.seed_sd(), seed_sd_dice_method=dice_sd.get(side.name),
            seed_sd_dice_reference=dice_sd.get(ref.name)))
    return out


def _ranking(arms: Sequence[ResultValues], metric: str, label, opt: Options, dataset: str = "") -> dict | None:
    r = rank_bootstrap({a.name: a.values for a in arms}, lower_is_better=str(metric).lower() in
                       LOWER_IS_BETTER_METRICS, n_boot=opt.n_boot_rank, seed=opt.seed, correction=opt.correction,
                       seeds={a.name: a.seeds for a in arms})
    if r is not None:
        r = {"dataset": dataset, "metric": display_metric(metric), "label": label} | r
    return r


def _report(records: list[dict], rankings: list[dict], warnings: list[str], methods: list[str], provenance: dict,
            opt: Options) -> dict:
    """The report dict: records corrected as one family and decided; their warnings also listed once in
    ``warnings``."""
    records = finalize(records, opt.correction, opt.alpha)
    warnings = list(warnings) + list(dict.fromkeys(w for r in records for w in r["warnings"]))
    return {"records": records, "ranking": rankings, "warnings": warnings, "methods": methods,
            "provenance": provenance}


def _as_list(x, default) -> list:
    if x is None or (not isinstance(x, str) and not list(x)):
        return list(default)
    return [x] if isinstance(x, (str, int)) else list(x)


def _unique_names(arms: list[ResultValues], paths) -> None:
    if len({a.name for a in arms}) < len(arms):  # ambiguous short names: fall back to the paths as given
        for a, p in zip(arms, paths):
            a.name = str(p)


def _usable_metrics(paths, metrics: list[str]) -> tuple[list[str], list[str]]:
    """(metrics every result has, warnings for the others); none usable -> DataError naming what is available."""
    for m in metrics:
        metric_key(m)
    have = {str(p): result_metrics(p) for p in paths}
    usable, warnings = [], []
    for m in metrics:
        lacking = [p for p, h in have.items() if m not in h]
        if lacking:
            warnings.append(f"{m}: not available in {', '.join(lacking)} (available there: "
                            f"{', '.join(have[lacking[0]]) or 'none'}); skipped")
        else:
            usable.append(m)
    if not usable:
        common = sorted(set.intersection(*(set(h) for h in have.values())))
        raise DataError(f"none of the metrics {', '.join(metrics)} is available in every result; available in all: "
                        f"{', '.join(common) or 'none'}")
    return usable, warnings


def analyse_results(paths, *, metrics: Iterable[str] | str = ("dice",), labels: Iterable | str = ("all",),
                    **options) -> dict:
    """The first result is the reference; every other is compared with it on the cases both have."""
    opt = Options(**options)
    paths = list(paths)
    if len(paths) < 2:
        raise DataError("give at least two results: the reference first, then the method(s) to compare with it")
    metrics = [str(m).lower().strip("|") for m in _as_list(metrics, ["dice"])]   # |rvd| = rvd
    labels = [check_label(v) for v in _as_list(labels, ["all"])]
    metrics, warnings = _usable_metrics(paths, metrics)
    records, rankings, arms_prov, spacing, names = [], [], {}, set(), []
    dice_sd: dict = {}
    for mi, metric in enumerate(metrics):
        for label in labels:
            arms = load_arms(paths, metric, label, opt.empty)
            _unique_names(arms, paths)
            if mi == 0 and label == labels[0]:
                names = [a.name for a in arms]
                for a, p in zip(arms, paths):
                    spacing |= a.spacing_sources
                    arms_prov[a.name] = arm_provenance(a.fold_dirs)
                    if a.n_seeds > 1:
                        d = load_result(p, "dice", "all", opt.empty) if (metric, label) != ("dice", "all") else a
                        dice_sd[a.name] = d.seed_sd()
            records += compare_arms(arms[0], arms[1:], metric, label, opt, dice_sd=dice_sd)
            r = _ranking(arms, metric, label, opt, records[-1]["dataset"] or "")
            if r:
                rankings.append(r)
    warnings += protocol_warnings(arms_prov) + checkpoint_warnings(arms_prov)
    report = _report(records, rankings, warnings, names, opt.provenance(spacing, arms_prov), opt)
    return name_labels(report, result_label_names(paths))


def name_labels(report: dict, label_names: dict[str, str]) -> dict:
    """``label_name`` on every record and ranking of a named label (dataset.json's names, as summary.json records
    them); the report's ``label_names``."""
    for r in list(report["records"]) + list(report.get("ranking") or []):
        name = label_names.get(str(r.get("label")))
        if name:
            r["label_name"] = name
    report["label_names"] = dict(label_names)
    return report


# ------------------------------------------------------------------------------------------------ long CSV
def analyse_cases(csv_path, *, reference: str | None = None, metrics: Iterable[str] | None = None,
                  labels: Iterable | None = None, **options) -> dict:
    """Long CSV ``case,method,value[,metric,label,seed,group]``: every method vs ``reference`` (default: the first
    method in the file) per metric and label; a ``group`` column names the patient of each case."""
    opt = Options(**options)
    data, order, groups = read_cases(csv_path)
    reference = reference or order[0]
    want_m = None if not metrics else {str(m).lower().strip("|") for m in _as_list(metrics, [])}
    want_l = None if not labels else {str(v).lower() for v in _as_list(labels, [])}
    records, rankings = [], []
    dice_key = next((k for k in (("dice", None), ("dice", "all")) if k in data), None)
    dice_sd = ({m: seed_sd(s) for m, s in data[dice_key].items() if len(s) > 1} if dice_key else {})
    for (metric, label), methods in data.items():
        if (want_m and metric not in want_m) or (want_l and str(label).lower() not in want_l):
            continue
        if reference not in methods:
            raise DataError(f"{csv_path}: no rows for the reference method '{reference}'"
                            + (f" (metric {metric}, label {label})" if metric != "value" or label else "")
                            + f"; methods: {', '.join(sorted(methods))}")
        arms = [ResultValues(name=m, dataset="", values=average_seeds(s), seeds=s)
                for m, s in sorted(methods.items(), key=lambda kv: order.index(kv[0]))]
        arms.sort(key=lambda a: a.name != reference)
        if len(arms) < 2:
            continue
        records += compare_arms(arms[0], arms[1:], metric, label, opt, dice_sd=dice_sd, groups=groups)
        r = _ranking(arms, metric, label, opt)
        if r:
            rankings.append(r)
    if not records:
        raise DataError(f"{csv_path}: no method other than the reference '{reference}' to compare"
                        + (" for the metric/label asked" if want_m or want_l else ""))
    return _report(records, rankings, [], [reference] + [m for m in order if m != reference],
                   opt.provenance(["as given in the CSV"]), opt)


def table_records(table: dict, csv_path, reference: str, metric: str, opt: Options) -> list[dict]:
    """Uncorrected records, one per (dataset, method != reference), paired over the ``pair_by`` entries."""
    records = []
    lower = str(metric).lower() in LOWER_IS_BETTER_METRICS
    for ds, methods in table.items():
        if reference not in methods:
            raise DataError(f"{csv_path}: dataset '{ds}' has no rows for the reference method '{reference}' "
                            f"(methods: {', '.join(sorted(methods))})")
        ref = ResultValues(name=reference, dataset=ds, values=methods[reference])
        for m, v in methods.items():
            if m == reference:
                continue
            side = ResultValues(name=m, dataset=ds, values=v)
            if set(side.values) & set(ref.values):
                records += compare_arms(ref, [side], metric, None, opt, dataset=ds)
            else:
                result = comparison({0: {}}, {0: {}}, test=opt.test, n_boot=0)
                records.append(make_record(dataset=ds, method=m, reference=reference, metric=display_metric(metric),
                                           label=None, lower_is_better=lower, result=result, only_in_method=len(side.values),
                                           only_in_reference=len(ref.values)))
    if not records:
        raise DataError(f"{csv_path}: no method other than the reference '{reference}' to compare")
    return records


def analyse_table(csv_path, *, pair_by: str = "baseline", reference: str = "none", metric: str = "value",
                  **options) -> dict:
    """Per-baseline table ``dataset,<pair_by>,method,value``: :func:`table_records` plus a ranking per dataset
    (units = the ``pair_by`` entries)."""
    opt = Options(**options)
    table = read_table(csv_path, pair_by)
    if str(metric).lower().strip("|") in SIGNED_METRICS:   # a signed metric (RVD) is compared as |value|
        metric = str(metric).lower().strip("|")
        table = {ds: {m: {k: abs(v) for k, v in vals.items()} for m, vals in ms.items()} for ds, ms in table.items()}
    records = table_records(table, csv_path, reference, metric, opt)
    rankings = []
    for ds, methods in table.items():
        arms = [ResultValues(name=m, dataset=ds, values=v) for m, v in methods.items()]
        arms.sort(key=lambda a: a.name != reference)
        r = _ranking(arms, metric, None, opt, ds)
        if r:
            rankings.append(r)
    methods = [reference] + sorted({m for ms in table.values() for m in ms} - {reference})
    return _report(records, rankings, [], methods, opt.provenance(["as given in the table"]), opt)


def analyse(results=(), *, table=None, cases=None, metrics=None, labels=None, pair_by: str = "baseline",
            reference: str | None = None, **options) -> dict:
    """The analysis mode of one ``salseg stats`` call: RESULT paths (2 or more, the reference first), ``table`` (a
    per-baseline CSV) or ``cases`` (a long per-case CSV) -- exactly one of them."""
    results = list(results or [])
    if bool(results) + (table is not None) + (cases is not None) > 1:
        raise DataError("give RESULT folders, --table or --cases, one of them")
    if table is not None:
        return analyse_table(table, pair_by=pair_by, reference=reference or "none",
                             metric=(list(metrics or []) or ["value"])[0], **options)
    if cases is not None:
        return analyse_cases(cases, reference=reference, metrics=metrics or None, labels=labels or None, **options)
    if len(results) < 2:
        raise DataError("give at least two results (the reference first), --table FILE.csv or --cases FILE.csv")
    return analyse_results(results, metrics=metrics or ["dice"], labels=labels or ["all"], **options)
