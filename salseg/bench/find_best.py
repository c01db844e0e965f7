"""``find-best``: from the finished cross-validations of a dataset to the model you ship (nnU-Net's
``find_best_configuration``, with salseg's paired verdict added).

1. Arms: every ``<network>__<module>__<config>`` folder under ``results/<dataset>/`` whose folds ``fold_0 ..
   fold_{n-1}`` (n = the folds of splits.json; seed 0) all finished (config.json, checkpoint_final.pt,
   validation/summary.json of one run id, salseg.run.identity). An arm with some folds but not all is refused, naming the missing ones.
2. Candidates: each arm, and each pair of arms that saved validation probabilities (``--save-probabilities`` or
   ``salseg validate --save-probabilities``) for the same cases, averaged fold by fold (salseg.infer.ensemble).
   Each candidate's cross-validation predictions (every fold's validation cases) are gathered in
   ``<out>/candidates/<name>/`` and evaluated there against the raw labels (summary.json).
3. Postprocessing per candidate, decided on those predictions (salseg.infer.postprocess).
4. The winner: the highest mean foreground Dice; salseg.stats compares it with the runner-up on the same cases
   (paired test, Holm, bootstrap interval): "better", or "not separable" -> the cheaper of the two (latency of one
   sliding-window tile on the CPU, then parameters) is recommended.
5. ``find_best.json`` and ``inference_instructions.md`` (the exact ``salseg predict`` command) in ``<out>``.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from salseg import results as R
from salseg.bench.collect import is_finished
from salseg.errors import DataError
from salseg.fileio import read_json, write_json
from salseg.run.config import RunConfig
from salseg.run.folds import resolve_result_dataset

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


@dataclass
class Arm:
    name: str                 # the experiment folder name
    network: str
    module: str
    config: str
    fold_dirs: list[Path]
    cfg: RunConfig            # fold 0's
    has_probabilities: bool
    params: int = 0
    latency_ms: float = float("nan")


@dataclass
class Candidate:
    name: str
    arms: list[Arm]
    folder: Path
    dice: float = float("nan")
    hd95: float = float("nan")
    per_class: dict = field(default_factory=dict)
    rules: object = None

    @property
    def params(self) -> int:
        return sum(a.params for a in self.arms)

    @property
    def latency_ms(self) -> float:
        return float(sum(a.latency_ms for a in self.arms))


# ------------------------------------------------------------------------------------------------------ arms
def _finished(fdir: Path) -> bool:
    """One finished run: config.json, checkpoint_final.pt and validation/summary.json agree (as ``bench run``)."""
    return is_finished(fdir)


def _has_probabilities(fdir: Path) -> bool:
    from salseg.infer.postprocess import label_files

    val = fdir / R.VALIDATION_DIR
    cases = label_files(val)
    return bool(cases) and all((val / f"{c}.npz").is_file() and (val / f"{c}.json").is_file() for c in cases)


def _stem(p: Path) -> str:
    from salseg.dataset.io import file_ending

    return p.name[: -len(file_ending(p))] if file_ending(p) else p.stem


def find_arms(root: Path, ds: str, n_folds: int, only: list[str] | None = None) -> list[Arm]:
    """The finished arms (module doc, step 1); a partial one is refused, naming what is missing."""
    base = R.results_root(root, ds)
    arms, partial = [], []
    names = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    for name in names:
        try:
            network, module, config = R.parse_experiment_name(name)
        except ValueError:
            continue
        if only and name not in only:
            continue
        fdirs = [base / name / R.fold_name(f) for f in range(n_folds)]
        done = [d for d in fdirs if _finished(d)]
        if not done and not any(d.exists() for d in fdirs):
            continue  # e.g. only fold_all: not a cross-validation
        if len(done) < n_folds:
            partial.append(f"{name} (unfinished or missing: {', '.join(d.name for d in fdirs if d not in done)})")
            continue
        cfg = RunConfig.load(fdirs[0] / R.CONFIG_JSON)
        arms.append(Arm(name, network, module, config, fdirs, cfg, all(_has_probabilities(d) for d in fdirs)))
    if partial:
        raise DataError(f"{base}: partial cross-validations: {'; '.join(partial)}; finish them, or choose the "
                        f"finished arms with --arms")
    missing = sorted(set(only or []) - {a.name for a in arms})
    if missing:
        raise DataError(f"{base}: no finished cross-validation named {', '.join(missing)} (found: "
                        f"{', '.join(a.name for a in arms) or 'none'})")
    if len(arms) < 1:
        raise DataError(f"{base}: no finished {n_folds}-fold cross-validation to choose from")
    return arms


def measure_cost(arm: Arm, repeats: int = 3) -> None:
    """Parameters and the median CPU latency (ms) of one sliding-window tile of fold 0's network."""
    import torch

    from salseg.infer.predictor import predict_preprocessed
    from salseg.run.model import load_fold_model

    cfg, model = load_fold_model(arm.fold_dirs[0], "final")
    arm.params = int(sum(p.numel() for p in model.parameters()))
    patch = [int(p) for p in cfg.patch_size]
    data = np.zeros((cfg.in_channels, *([1] if len(patch) == 2 else []), *patch), np.float32)
    times = []
    with torch.inference_mode():
        predict_preprocessed(model, data, cfg.configuration, num_classes=cfg.num_classes, mirroring=False,
                             device="cpu")  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            predict_preprocessed(model, data, cfg.configuration, num_classes=cfg.num_classes, mirroring=False, device="cpu")
            times.append((time.perf_counter() - t0) * 1000.0)
    arm.latency_ms = float(np.median(times))


# the protocol fields a configuration decides: arms of different configurations differ there by design
CONFIG_FIELDS = ("config", "data_identifier", "patch_size", "plans", "augmentation", "batch_size", "network_options",
                 "cpu_defaults_applied")


def recipe_warnings(arms: list[Arm]) -> list[str]:
    """Arms of different configurations trained by different recipes (epochs, lr, schedule, loss, ...; the fields a
    configuration decides aside): one warning naming the fields, as salseg stats warns within one configuration."""
    recipes = {a.name: {k: v for k, v in a.cfg.protocol.items() if k not in CONFIG_FIELDS} for a in arms
               if a.cfg.protocol}
    if len({a.config for a in arms}) < 2 or len(recipes) < 2:
        return []
    first = next(iter(recipes.values()))
    differ = sorted({k for r in recipes.values() for k in set(r) | set(first) if r.get(k) != first.get(k)})
    if not differ:
        return []
    shown = "; ".join(f"{k}: " + ", ".join(f"{n}={recipes[n].get(k)!r}" for n in recipes) for k in differ[:3])
    return [f"the arms were not trained by the same recipe ({shown}{' ...' if len(differ) > 3 else ''}); "
            f"their comparison mixes the configuration with the training"]


# ------------------------------------------------------------------------------------------------ candidates
def _gather_arm(arm: Arm, folder: Path) -> list[str]:
    """Copy the arm's validation label maps (every fold) into ``folder``; their case ids."""
    from salseg.infer.postprocess import label_files

    cases = []
    for d in arm.fold_dirs:
        for case, p in label_files(d / R.VALIDATION_DIR).items():
            shutil.copy2(p, folder / p.name)
            cases.append(case)
    return cases


def _gather_ensemble(arms: list[Arm], folder: Path) -> list[str]:
    from salseg.infer.ensemble import ensemble_folders

    cases = []
    for f in range(len(arms[0].fold_dirs)):
        written = ensemble_folders([a.fold_dirs[f] / R.VALIDATION_DIR for a in arms], folder, overwrite=True)
        cases += [_stem(p) for p in written]
    return cases


def _same_cases(a: Arm, b: Arm) -> bool:
    from salseg.infer.ensemble import probability_files

    return all(set(probability_files(x / R.VALIDATION_DIR)) == set(probability_files(y / R.VALIDATION_DIR))
               for x, y in zip(a.fold_dirs, b.fold_dirs))


def evaluate_candidate(cand: Candidate, cases: list[str], ref_dir: Path, label_values: list[int]) -> None:
    """summary.json of the candidate's predictions, its mean Dice / HD95, and its postprocessing decision."""
    from salseg.dataset.io import read_label
    from salseg.evaluate import evaluate_folders
    from salseg.infer.postprocess import decide, label_files

    fg = [v for v in label_values if v != 0]
    summary = evaluate_folders(cand.folder, ref_dir, labels=fg, output=cand.folder / R.SUMMARY_JSON, cases=cases)
    fg_mean = summary.get("region_foreground_mean") or summary["foreground_mean"]   # regions: ranked on them
    cand.dice = float(fg_mean["Dice"])
    cand.hd95 = float(fg_mean.get("HD95", float("nan")))
    cand.per_class = {str(k): float(v["Dice"]) for k, v in summary["mean"].items()}
    preds = label_files(cand.folder)
    refs = label_files(ref_dir)
    cand.rules = decide(((read_label(preds[c])[0], read_label(refs[c])[0]) for c in cases), label_values)


def verdict(winner: Candidate, runner_up: Candidate) -> dict:
    """salseg.stats' paired comparison of the winner (method) with the runner-up (reference), mean foreground
    Dice per case (region datasets: mean over the regions); the recommendation that follows."""
    from salseg.stats import analyse_results

    regions = "region_mean" in read_json(winner.folder / R.SUMMARY_JSON)
    report = analyse_results([runner_up.folder, winner.folder], metrics=["dice"],
                             labels=["regions" if regions else "all"])
    rec = report["records"][0]
    better = rec["verdict"] == "better"
    cheaper = min((winner, runner_up), key=lambda c: (c.latency_ms, c.params))
    return {"method": winner.name, "reference": runner_up.name, "verdict": rec["verdict"],
            "reason": rec["verdict_reason"], "mean_diff": rec["mean_diff"], "p_corrected": rec["p_corrected"],
            "ci": [rec["boot_ci_low"], rec["boot_ci_high"]], "n": rec["n"], "test": rec["test"],
            "warnings": report["warnings"],
            "recommended": winner.name if better else cheaper.name,
            "summary": ("better" if better else "not separable — pick the cheaper one"),
            "cost": {c.name: {"params": c.params, "latency_ms": c.latency_ms} for c in (winner, runner_up)}}


# ------------------------------------------------------------------------------------------------ the call
def find_best(root, dataset: str, *, out: Path | None = None, arms: list[str] | None = None,
              progress: Progress | None = None) -> dict:
    """Run steps 1-5 of the module doc; returns what find_best.json holds."""
    from salseg.infer.postprocess import write_rules
    from salseg.stats.provenance import arm_provenance, protocol_warnings

    root = R.resolve_root(root)
    ds = resolve_result_dataset(root, dataset)
    splits = read_json(R.splits_file(root, ds))
    n_folds = len(splits) if isinstance(splits, list) else 0
    if n_folds < 2:
        raise DataError(f"{R.splits_file(root, ds)}: no cross-validation splits")
    found = find_arms(root, ds, n_folds, arms)
    labels = list(found[0].cfg.label_values)
    for a in found[1:]:
        if list(a.cfg.label_values) != labels:
            raise DataError(f"{a.fold_dirs[0] / R.CONFIG_JSON}: label values {a.cfg.label_values} differ from "
                            f"{found[0].name}'s {labels}")
    out = Path(out) if out is not None else R.find_best_dir(root, ds)
    work = out / "candidates"
    if work.exists():
        shutil.rmtree(work)  # find-best's own earlier output
    notes = [f"{a.name}: no validation probabilities, so no ensembles with it (salseg validate {ds} {a.network} "
             f"-m {a.module} -c {a.config} -f F --save-probabilities adds them)" for a in found
             if not a.has_probabilities]
    with_probs = [a for a in found if a.has_probabilities]
    groups = [[a] for a in found] + [list(p) for p in itertools.combinations(with_probs, 2) if _same_cases(*p)]
    ref_dir = R.raw_dir(root, ds) / "labelsTr"
    cands = []
    for i, group in enumerate(groups):
        name = "+".join(a.name for a in group)
        cand = Candidate(name, group, work / name)
        cand.folder.mkdir(parents=True)
        cases = _gather_arm(group[0], cand.folder) if len(group) == 1 else _gather_ensemble(group, cand.folder)
        evaluate_candidate(cand, cases, ref_dir, labels)
        cands.append(cand)
        if progress:
            progress("candidates", i + 1, len(groups))
    for a in found:
        measure_cost(a)
    ranked = sorted(cands, key=lambda c: -c.dice if np.isfinite(c.dice) else np.inf)
    decision = verdict(ranked[0], ranked[1]) if len(ranked) > 1 else None
    chosen = next(c for c in ranked if c.name == decision["recommended"]) if decision else ranked[0]
    for c in cands:
        write_rules(c.folder / R.POSTPROCESSING_JSON, c.rules)
    warnings = recipe_warnings(found) + [w for config in sorted({a.config for a in found}) for w in protocol_warnings(
        {a.name: arm_provenance(a.fold_dirs) for a in found if a.config == config})]
    result = {
        "dataset": ds, "folds": n_folds, "label_values": labels,
        "candidates": [_describe(c) for c in ranked],
        "winner": ranked[0].name, "runner_up": ranked[1].name if len(ranked) > 1 else None,
        "verdict": decision, "chosen": chosen.name,
        "postprocessing": str(chosen.folder / "postprocessing.json"),
        "predict_command": predict_command(root, ds, chosen, n_folds),
        "warnings": warnings, "notes": notes,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "find_best.json", result)
    _write_instructions(out / "inference_instructions.md", result, chosen)
    return result


def _describe(c: Candidate) -> dict:
    return {"name": c.name, "arms": [a.name for a in c.arms], "dice": c.dice, "hd95": c.hd95,
            "dice_per_class": c.per_class, "params": c.params, "latency_ms": c.latency_ms,
            "postprocessing": c.rules.to_json() if c.rules is not None else None,
            "postprocessing_applied": c.rules.describe() if c.rules is not None else "none",
            "folder": str(c.folder)}


def predict_command(root: Path, ds: str, chosen: Candidate, n_folds: int) -> str:
    first, rest = chosen.arms[0], chosen.arms[1:]
    parts = ["salseg", "--root", str(root), "predict", ds, first.network, "--module", first.module,
             "-c", first.config, "-f", *[str(f) for f in range(n_folds)]]
    if rest:
        parts += ["--ensemble-models", *[f"{a.network}:{a.module}:{a.config}" for a in rest]]
    if chosen.rules is not None and not chosen.rules.empty:
        parts += ["--rules", str(chosen.folder / "postprocessing.json")]
    return " ".join(parts + ["-i", "INPUT_FOLDER", "-o", "OUTPUT_FOLDER"])


def _write_instructions(path: Path, result: dict, chosen: Candidate) -> None:
    from salseg.fileio import atomic_path

    v = result["verdict"]
    lines = [f"# Inference instructions for {result['dataset']}", "",
             f"Chosen: **{chosen.name}** (cross-validation mean foreground Dice {chosen.dice:.4f}, "
             f"{result['folds']} folds).", ""]
    if v:
        lines += [f"Winner {v['method']} vs runner-up {v['reference']}: **{v['summary']}** ({v['reason']}).", ""]
        lines += [f"- {name}: {c['params']:,} parameters, {c['latency_ms']:.1f} ms per tile (CPU)"
                  for name, c in v["cost"].items()] + [""]
    lines += [f"Postprocessing: {chosen.rules.describe()}.", "", "Run:", "", "```",
              result["predict_command"], "```", ""]
    if chosen.rules is not None and not chosen.rules.empty:
        lines += ["Or on predictions you already have:", "", "```",
                  f"salseg postprocess -i PREDICTIONS -o OUTPUT_FOLDER --rules {result['postprocessing']}", "```", ""]
    for w in result["warnings"] + result["notes"]:
        lines.append(f"- note: {w}")
    with atomic_path(path, ".md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
