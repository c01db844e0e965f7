"""Robustness to input perturbations (the paper's Table IX): re-predict the validation cases of a trained fold with

- ``noise_<std>``: Gaussian noise N(0, std^2) added to the NORMALISED (preprocessed) image, i.e. std in units of
  the image's own intensity standard deviation after z-scoring;
- ``jitter``: intensity / colour jitter applied per channel (RGB channels get independent draws = colour jitter):
  contrast x c around the channel mean (c ~ U(0.75, 1.25)), brightness + b * channel std (b ~ U(-0.25, 0.25)) and
  gamma g ~ U(0.7, 1.5) on the channel's [min, max] range;

every draw from ``numpy.random.default_rng([seed, case index, condition index])``. Predictions are made exactly as
the training's validation export (sliding window, mirroring by default, final checkpoint), brought back to the
original geometry and scored against the raw labels (Dice and HD95 per label, ``salseg.evaluate``), so the
``clean`` condition reproduces ``validation/summary.json``. The drop is clean minus perturbed for Dice and perturbed
minus clean for HD95 (positive = worse in both). ``robustness.json`` is written beside the results.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from salseg import results as R
from salseg.errors import ConfigError, DataError

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
ROBUSTNESS_JSON = "robustness.json"
JITTER = {"contrast": (0.75, 1.25), "brightness": (-0.25, 0.25), "gamma": (0.7, 1.5)}


def add_noise(data: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    return (data + rng.normal(0.0, std, size=data.shape)).astype(np.float32)


def jitter(data: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Contrast, brightness, gamma per channel of (C, Z, Y, X) data; returns (jittered, drawn parameters)."""
    out = np.empty_like(data, dtype=np.float32)
    params = []
    for ch in range(data.shape[0]):
        x = data[ch].astype(np.float64)
        c, b, g = (float(rng.uniform(*JITTER[k])) for k in ("contrast", "brightness", "gamma"))
        mean, std = float(x.mean()), float(x.std()) or 1.0
        x = (x - mean) * c + mean + b * std
        lo, hi = float(x.min()), float(x.max())
        if hi > lo:
            x = ((x - lo) / (hi - lo)) ** g * (hi - lo) + lo
        out[ch] = x
        params.append({"contrast": c, "brightness": b, "gamma": g})
    return out, params


def _fold_dirs(result_dir: Path) -> list[Path]:
    if (result_dir / R.CONFIG_JSON).is_file():
        return [result_dir]
    folds = sorted(p for p in result_dir.glob("fold_*") if (p / R.CONFIG_JSON).is_file())
    if not folds:
        raise DataError(f"{result_dir}: neither a trained fold folder (with {R.CONFIG_JSON}) nor an experiment folder "
                        f"with trained fold_* folders")
    return folds


def _root_of(fold_dir: Path, dataset: str) -> Path:
    root = fold_dir.resolve().parents[3]
    if R.results_root(root, dataset) != fold_dir.resolve().parents[1]:
        raise DataError(f"{fold_dir}: not inside <root>/results/{dataset}/<experiment>/ (needed to find the "
                        f"preprocessed cases and raw labels)")
    return root


def conditions(noise: Sequence[float], use_jitter: bool) -> list[tuple[str, str, float | None]]:
    out = [("clean", "clean", None)]
    for s in noise:
        if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0):
            raise ConfigError(f"noise standard deviations must be positive numbers, got {s!r}")
        out.append((f"noise_{float(s):g}", "noise", float(s)))
    if use_jitter:
        out.append(("jitter", "jitter", None))
    return out


def _predict_fold(fold_dir: Path, conds, seed: int, mirroring: bool, device, progress, case_offset: int):
    """{condition: [(case id, prediction (original grid), reference, spacing)]}, {case: {condition: params}}."""
    import torch

    from salseg.dataset import load_dataset_json, read_label
    from salseg.infer.export import labels_from_probabilities, region_labels, revert
    from salseg.infer.predictor import predict_preprocessed, resolve_device
    from salseg.run import load_fold_model
    from salseg.train.data import load_case
    from salseg.plan.splits import fold_cases

    cfg, model = load_fold_model(fold_dir, "final")
    spec = cfg.labels
    root = _root_of(fold_dir, cfg.dataset)
    dev = resolve_device(device)
    model.to(dev).eval()
    _, val_ids = fold_cases(root, cfg.dataset, cfg.fold)
    if not val_ids:
        raise DataError(f"{fold_dir}: fold {cfg.fold} has no validation cases")
    folder = R.config_dir(root, cfg.dataset, cfg.data_identifier)
    ending = load_dataset_json(R.raw_dir(root, cfg.dataset)).file_ending
    preds: dict[str, list] = {name: [] for name, _, _ in conds}
    params: dict[str, dict] = {}
    for i, cid in enumerate(val_ids):
        case = load_case(folder, cid, need_seg=False)
        ref_path = R.raw_dir(root, cfg.dataset) / "labelsTr" / f"{cid}{ending}"
        ref, _ = read_label(ref_path)
        spacing = case.properties["original"]["spacing"]
        for j, (name, kind, std) in enumerate(conds):
            rng = np.random.default_rng([seed, case_offset + i, j])
            data = case.data
            if kind == "noise":
                data = add_noise(data, std, rng)
            elif kind == "jitter":
                data, drawn = jitter(data, rng)
                params.setdefault(cid, {})[name] = drawn
            torch.manual_seed(seed)
            probs = predict_preprocessed(model, data, cfg.configuration, num_classes=cfg.num_classes, step=0.5,
                                         mirroring=mirroring, device=dev, regions=spec.has_regions)
            labels = region_labels(probs, case.properties, spec, "scipy")[0] if spec.has_regions else \
                labels_from_probabilities(revert(probs, case.properties), cfg.label_values)
            if labels.shape != ref.shape:
                raise DataError(f"{ref_path}: label shape {list(ref.shape)} differs from the prediction "
                                f"{list(labels.shape)}")
            preds[name].append((cid, labels, ref, spacing))
        if progress:
            progress(f"robustness {fold_dir.parent.name}/{fold_dir.name}", i + 1, len(val_ids))
    return cfg, ending, preds, params


def _condition_record(name, kind, std, summary, labels) -> dict:
    mean = summary["mean"]
    return {"name": name, "kind": kind, "std": std, "n_cases": len(summary["metric_per_case"]),
            "dice": summary["foreground_mean"].get("Dice"), "hd95": summary["foreground_mean"].get("HD95"),
            "dice_per_label": {str(v): mean[str(v)]["Dice"] for v in labels},
            "hd95_per_label": {str(v): mean[str(v)]["HD95"] for v in labels}}


def _diff(a, b):
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return None
    return float(a) - float(b)


def robustness(result_dir, noise: Sequence[float] = (0.1, 0.2), jitter: bool = True, *, seed: int = 0,
               mirroring: bool = True, device: str = "auto", output=None, progress: Progress | None = None) -> dict:
    """Dice / HD95 under each condition for a fold folder or an experiment folder (its folds' validation cases
    pooled, each predicted by its own fold); writes ``robustness.json`` in ``result_dir`` (or ``output``)."""
    from salseg.evaluate import evaluate_arrays
    from salseg.fileio import write_json

    result_dir = Path(result_dir)
    if not result_dir.is_dir():
        raise DataError(f"{result_dir}: result folder not found")
    conds = conditions(noise, jitter)
    pooled: dict[str, list] = {name: [] for name, _, _ in conds}
    params: dict = {}
    cfg = None
    folds = []
    for fold_dir in _fold_dirs(result_dir):
        cfg, ending, preds, drawn = _predict_fold(fold_dir, conds, seed, mirroring, device, progress,
                                                  sum(len(v) for v in pooled.values()) // len(conds))
        folds.append(str(cfg.fold))
        for k, v in preds.items():
            pooled[k] += v
        params.update(drawn)
    labels = [int(v) for v in cfg.label_values if int(v) != 0]
    records, per_case = [], {}
    for name, kind, std in conds:
        summary = evaluate_arrays(pooled[name], labels, metrics=("dice", "hd95"), file_ending=ending, spec=cfg.labels)
        records.append(_condition_record(name, kind, std, summary, labels))
        for c in summary["metric_per_case"]:
            cid = c["prediction_file"][: -len(ending)] if ending else c["prediction_file"]
            per_case.setdefault(cid, {})[name] = {str(v): {"Dice": c["metrics"][str(v)]["Dice"],
                                                           "HD95": c["metrics"][str(v)]["HD95"]} for v in labels}
    clean = records[0]
    for r in records:
        r["dice_drop"] = _diff(clean["dice"], r["dice"])
        r["hd95_increase"] = _diff(r["hd95"], clean["hd95"])
        r["dice_drop_per_label"] = {k: _diff(clean["dice_per_label"][k], v) for k, v in r["dice_per_label"].items()}
    out = {"result": str(result_dir.resolve()), "dataset": cfg.dataset, "network": cfg.network, "module": cfg.module,
           "config": cfg.config, "folds": folds, "seed": seed, "mirroring": mirroring, "checkpoint": "final",
           "labels": labels, "jitter_ranges": JITTER if jitter else None,
           "notes": "noise std in units of the normalised image; dice_drop = clean - perturbed, hd95_increase = "
                    "perturbed - clean (positive = worse); metrics on the original geometry vs the raw labels",
           "conditions": records, "per_case": per_case, "jitter_params": params}
    path = Path(output) if output is not None else result_dir / ROBUSTNESS_JSON
    write_json(path, out)
    out["path"] = str(path)
    log.info("robustness of %s written to %s", result_dir, path)
    return out
