"""Collecting a grid's fold results: ``results.csv`` rows, the mean ± std table, significance and efficiency.

Every number comes from a file the grid left: ``validation/summary.json`` (Dice and HD95 per label and their
foreground means, original geometry), ``log.jsonl`` (training curves) and ``config.json`` (the model as trained,
for parameters, FLOPs and latency at the trained patch size).

The comparison pairs are chosen here (:func:`references`): every module is compared with the same network's
``none`` (the no-context baseline); when the grid holds ``stack`` (K neighbouring slices as input channels, the
context baseline) every slice module is compared with ``stack`` too, in the same Holm family, by the one decision of
salseg.stats (with several seeds the runs are a unit of replication); a combination's mean ± SD is over seeds when
the grid has several.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from salseg import results as R
from salseg.errors import DataError
from salseg.fileio import read_json
from salseg.run.identity import finished_run

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
METRICS = (("dice", "Dice"), ("hd95", "HD95"))
NONE, STACK = "none", "stack"      # the no-context and the context baseline


def is_finished(fold_dir: Path) -> bool:
    """One finished run: config.json, checkpoint_final.pt and validation/summary.json agree (salseg.run.identity)."""
    return (fold_dir / R.VALIDATION_DIR / R.SUMMARY_JSON).is_file() and finished_run(fold_dir)


def is_slice_module(module: str) -> bool:
    """A slice module (SA-LSTM, LSTM-SA, ablations; not ``stack``), i.e. one that must beat ``stack``."""
    from salseg.nets import registry

    if module in (NONE, STACK):
        return False
    try:
        return registry.get_module(module).kind == "slice"
    except Exception:  # a module no longer registered (an old result folder): compared with none only
        return False


def references(module: str, present: set[str]) -> list[str]:
    """The modules ``module`` is compared with, of the same network's ``present`` modules: ``none`` for every
    module but ``none``; also ``stack`` for a slice module when the grid holds ``stack``."""
    if module == NONE:
        return []
    refs = [NONE] if NONE in present else []
    if STACK in present and is_slice_module(module):
        refs.append(STACK)
    return refs


def _num(v) -> float:
    return math.nan if v is None else float(v)


def label_names(root: Path, dataset: str) -> dict[str, str]:
    """label value (str) -> name, from plans.json (empty when unknown)."""
    from salseg.plans import read_plans

    path = R.plans_file(root, dataset)
    if not path.is_file():
        return {}
    return {str(v): str(k) for k, v in read_plans(path).labels.items()}


def fold_row(root: Path, dataset: str, combo) -> dict:
    """One results.csv row: identifiers (fold, seed), n_cases, dice_<label>, dice_mean, hd95_<label>, hd95_mean."""
    path = combo.fold_dir(root, dataset) / R.VALIDATION_DIR / R.SUMMARY_JSON
    summary = read_json(path)
    if not isinstance(summary, dict) or "mean" not in summary or "foreground_mean" not in summary:
        raise DataError(f"{path}: not a summary.json (needs 'mean' and 'foreground_mean')")
    row = {"dataset": dataset, "network": combo.network, "module": combo.module, "config": combo.config,
           "position": combo.position or "", "fold": combo.fold, "seed": combo.seed,
           "n_cases": len(summary.get("metric_per_case", []))}
    labels = sorted(summary["mean"], key=lambda s: int(s))
    regions = summary.get("region_mean") or {}     # region datasets: dice_region_1_2_3, ..., dice_region_mean
    for metric, key in METRICS:
        for lab in labels:
            row[f"{metric}_{lab}"] = _num(summary["mean"][lab].get(key))
        row[f"{metric}_mean"] = _num(summary["foreground_mean"].get(key))
        for reg, m in regions.items():
            row[f"{metric}_region_{'_'.join(reg.strip('(),').replace(' ', '').split(','))}"] = _num(m.get(key))
        if regions:
            row[f"{metric}_region_mean"] = _num(summary["region_foreground_mean"].get(key))
    return row


def collect_rows(root: Path, dataset: str, combos: Sequence) -> tuple[list[dict], list[str]]:
    """(rows of the finished combinations, labels of the unfinished ones)."""
    rows, missing = [], []
    for c in combos:
        if is_finished(c.fold_dir(root, dataset)):
            rows.append(fold_row(root, dataset, c))
        else:
            missing.append(c.label)
    return rows, missing


def csv_text(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) and not math.isnan(v) else
                        ("nan" if isinstance(v, float) else v)) for k, v in r.items()})
    return buf.getvalue()


def _key(row: dict) -> tuple:
    return row["network"], row["module"], row["position"] or None


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else math.nan)


def _mean_over_folds(rs: list[dict], col: str) -> float:
    vals = [_num(r.get(col)) for r in rs]
    return _mean_std(vals)[0]


def summarise(rows: list[dict]) -> list[dict]:
    """Per (network, module, position): mean and SD of every metric column -- over seeds (each seed's mean over
    its folds) when the grid has several seeds, else over folds -- and the increase of the mean Dice / HD95 over the
    same network's ``none`` (None when absent) and, for slice modules, over ``stack`` (None when absent)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(_key(r), []).append(r)
    metric_cols = [k for k in rows[0] if k.startswith(("dice_", "hd95_"))] if rows else []
    out = []
    for (net, mod, pos), rs in groups.items():
        seeds = sorted({int(r.get("seed", 0)) for r in rs})
        by_seed = {s: [r for r in rs if int(r.get("seed", 0)) == s] for s in seeds}
        cases_per_fold: dict = {}
        for r in rs:
            cases_per_fold[r["fold"]] = max(cases_per_fold.get(r["fold"], 0), int(r["n_cases"]))
        rec = {"network": net, "module": mod, "position": pos, "config": rs[0]["config"],
               "folds": list(dict.fromkeys(r["fold"] for r in rs)), "seeds": seeds, "runs": len(rs),
               "n_cases": sum(cases_per_fold.values()), "sd_over": "seeds" if len(seeds) > 1 else "folds"}
        for col in metric_cols:
            if len(seeds) > 1:
                rec[col], rec[f"{col}_std"] = _mean_std([_mean_over_folds(by_seed[s], col) for s in seeds])
            else:
                rec[col], rec[f"{col}_std"] = _mean_std([_num(r.get(col)) for r in rs])
        out.append(rec)
    present: dict[str, set] = {}
    for r in out:
        if r["position"] is None:
            present.setdefault(r["network"], set()).add(r["module"])
    base = {(r["network"], r["module"]): r for r in out if r["module"] in (NONE, STACK) and r["position"] is None}
    for r in out:
        refs = references(r["module"], present.get(r["network"], set()))
        for ref, suffix in ((NONE, ""), (STACK, "_vs_stack")):
            b = base.get((r["network"], ref)) if ref in refs else None
            for m in ("dice", "hd95"):
                r[f"{m}_increase{suffix}"] = None if b is None else r[f"{m}_mean"] - b[f"{m}_mean"]
    return out


def pooled_values(root: Path, dataset: str, combos: Sequence, metric: str = "dice"):
    """Per-case values of one experiment (a stats ``ResultValues``): per seed the folds pooled (``seeds``), and each
    case's value averaged over the seeds that evaluated it (NaN seeds ignored; NaN when every seed is NaN);
    ``groups`` (case -> patient) from the dataset's dataset.json."""
    from salseg.stats import ResultValues, load_result
    from salseg.stats.load import average_seeds, result_groups

    seeds: dict[int, dict[str, float]] = {}
    sources, fold_dirs = [], []
    for c in combos:
        part = load_result(c.fold_dir(root, dataset), metric, "all")
        seeds.setdefault(int(getattr(c, "seed", 0)), {}).update(part.values)
        sources += part.sources
        fold_dirs.append(c.fold_dir(root, dataset))
    name = R.experiment_name(combos[0].network, combos[0].module, combos[0].config, combos[0].position)
    return ResultValues(name=name, dataset=dataset, values=average_seeds(seeds), sources=sources, seeds=seeds,
                        fold_dirs=fold_dirs, groups=result_groups(fold_dirs))


def comparison_pairs(groups: dict[tuple, list]) -> list[tuple[tuple, tuple]]:
    """(method key, reference key) pairs of (network, module, position) keys, in the grid's order: every module
    vs ``none``, then (for slice modules) vs ``stack``, when those baselines are in the grid."""
    present: dict[str, set] = {}
    for net, mod, pos in groups:
        if pos is None:
            present.setdefault(net, set()).add(mod)
    pairs = []
    for key in groups:
        net, mod, _ = key
        pairs += [(key, (net, ref, None)) for ref in references(mod, present.get(net, set()))]
    return pairs


def significance(root: Path, dataset: str, combos: Sequence, *, metric: str = "dice", test: str = "t",
                 correction: str = "holm") -> list[dict]:
    """salseg.stats records: every module vs the same network's ``none`` and every slice module also vs ``stack``
    (:func:`comparison_pairs`); per-case ``metric`` (foreground mean) of the validation cases pooled over the
    grid's finished folds, through the one decision of ``salseg stats`` (salseg.stats.compare_arms: the paired test
    with one seed per arm, the mixed model with runs as a unit of replication with more; cases of one patient as one
    unit); p-values corrected over all comparisons (one family)."""
    from salseg.stats import Options, compare_arms, finalize

    done = [c for c in combos if is_finished(c.fold_dir(root, dataset))]
    groups: dict[tuple, list] = {}
    for c in done:
        groups.setdefault((c.network, c.module, c.position), []).append(c)
    values = {key: pooled_values(root, dataset, cs, metric) for key, cs in groups.items()}
    opt = Options(test=test, correction=correction)
    dice_sd = {v.name: v.seed_sd() for v in values.values()} if metric == "dice" else {}
    records = []
    for key, ref_key in comparison_pairs(groups):
        records += compare_arms(values[ref_key], [values[key]], metric, "all", opt, dataset=dataset, dice_sd=dice_sd)
    return finalize(records, correction) if records else []


def efficiency(root: Path, dataset: str, combos: Sequence, *, repeats: int = 3, warmup: int = 1,
               progress: Progress | None = None) -> list[dict]:
    """Params, FLOPs, MACs and CPU latency (batch 1, threads 1) of each experiment's model as trained (its
    config.json: width, patch size, K slices), via salseg.bench.efficiency's counters; increases over ``none``."""
    import torch

    from salseg.bench.efficiency import count_flops, count_params, time_forward
    from salseg.nets.capabilities import capabilities_of
    from salseg.run import RunConfig, build_model

    firsts: dict[tuple, object] = {}
    for c in combos:
        if is_finished(c.fold_dir(root, dataset)):
            firsts.setdefault((c.network, c.module, c.position), c)
    records = []
    for i, ((net, mod, pos), c) in enumerate(firsts.items()):
        path = c.fold_dir(root, dataset) / R.CONFIG_JSON
        cfg = RunConfig.load(path)
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        shape = capabilities_of(model).input_shape(cfg.in_channels, cfg.patch_size)
        x = torch.randn(shape)
        flops = count_flops(model, x)
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            latency = time_forward(model, x, repeats, warmup, 1)
        finally:
            torch.set_num_threads(threads)
        records.append({"network": net, "module": mod, "position": pos, "size": list(cfg.patch_size),
                        "input_shape": list(shape), "width": cfg.options.get("width"), "params": count_params(model),
                        "flops": flops, "macs": flops // 2, "latency_ms": latency, "device": "cpu",
                        "threads": 1, "repeats": repeats, "skipped": None})
        if progress:
            progress("measuring efficiency", i + 1, len(firsts))
    base = {r["network"]: r for r in records if r["module"] == "none"}
    for r in records:
        b = base.get(r["network"])
        for key in ("params", "flops", "latency_ms"):
            r[f"{key}_increase_pct"] = None if not b or not b[key] else 100.0 * (r[key] - b[key]) / b[key]
    return records
