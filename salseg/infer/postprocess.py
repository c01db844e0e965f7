"""Postprocessing decided on cross-validation: "keep the largest connected component", for all foreground together
and per foreground class, adopted only where it does not lower the cross-validation Dice (nnU-Net's rule).

The rules themselves (format, connected components, ``apply``) live in salseg.run.rules, below infer, because a
model package carries them; they are re-exported here. Components are counted in voxels, never in mm: the decision
does not depend on the spacing.

The decision, on the cross-validation predictions of one candidate (every validation case of every fold):

1. all foreground together: keep only the largest component of the union of the foreground classes; adopted when
   no class's mean Dice over the cases drops;
2. then per class c (on the output of step 1 when it was adopted): keep only the largest component of c; adopted
   when c's mean Dice does not drop.

``postprocessing.json`` stores what was tested, per class the Dice before and after, and what is applied.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from salseg.errors import ConfigError
from salseg.run.rules import (CONNECTIVITY, FORMAT, Rules, check_rules_labels, keep_largest, largest_component,
                              read_rules, write_rules)

__all__ = ["CONNECTIVITY", "FORMAT", "Rules", "check_rules_labels", "decide", "keep_largest", "label_files",
           "largest_component", "postprocess_folder", "predict_postprocessed", "read_rules", "write_rules"]


# ---------------------------------------------------------------------------------------------------- decision
def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty (the case does not count for that class)."""
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(ref))
    return float("nan") if total == 0 else 2.0 * int(np.count_nonzero(pred & ref)) / total


def _mean(values: list[float]) -> float | None:
    arr = np.asarray(values, dtype=float)
    return None if arr.size == 0 or np.all(np.isnan(arr)) else float(np.nanmean(arr))


def _not_lower(after: float | None, before: float | None) -> bool:
    return before is None or (after is not None and after >= before - 1e-12)


def decide(pairs: Iterable[tuple[np.ndarray, np.ndarray]], label_values: Sequence[int]) -> Rules:
    """The rules the (prediction, reference) label maps of the cross-validation support (module doc: the rule).
    Streams the cases: each case's Dice of every variant is computed once, then the decision is taken on means."""
    rules = Rules([int(v) for v in label_values])
    fg, bg = rules.foreground, rules.background
    variants: dict[str, dict[int, list[float]]] = {k: {c: [] for c in fg} for k in ("base", "all", "base_c", "all_c")}
    n = 0
    for pred, ref in pairs:
        n += 1
        pred_all = keep_largest(pred, fg, bg)
        for c in fg:
            r = ref == c
            variants["base"][c].append(_dice(pred == c, r))
            variants["all"][c].append(_dice(pred_all == c, r))
            variants["base_c"][c].append(_dice(largest_component(pred == c), r))
            variants["all_c"][c].append(_dice(largest_component(pred_all == c), r))
    if n == 0:
        raise ConfigError("no cross-validation cases to decide postprocessing on")
    means = {k: {c: _mean(v) for c, v in d.items()} for k, d in variants.items()}
    rules.all_foreground = len(fg) > 0 and all(_not_lower(means["all"][c], means["base"][c]) for c in fg)
    start, per = ("all", "all_c") if rules.all_foreground else ("base", "base_c")
    rules.classes = [c for c in fg if _not_lower(means[per][c], means[start][c])]
    rules.record = {
        "cases": n,
        "rule": "adopted when the mean cross-validation Dice does not drop (all foreground: no class drops)",
        "all_foreground": {"adopted": rules.all_foreground, "dice_before": {str(c): means["base"][c] for c in fg},
                           "dice_after": {str(c): means["all"][c] for c in fg}},
        "per_class": {str(c): {"adopted": c in rules.classes, "dice_before": means[start][c],
                               "dice_after": means[per][c]} for c in fg},
    }
    return rules


# ---------------------------------------------------------------------------------------------------- folders
def label_files(folder: Path) -> dict[str, Path]:
    """case id -> label map file in ``folder`` (image endings only; hidden and temporary files skipped)."""
    from salseg.dataset.io import ALL_ENDINGS, file_ending
    from salseg.errors import DataError
    from salseg.fileio import is_temp_name

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        end = file_ending(p)
        if p.is_file() and not p.name.startswith(".") and not is_temp_name(p) and end in ALL_ENDINGS \
                and not p.name.endswith("_uncertainty" + end):
            out[p.name[: -len(end)]] = p
    return out


def postprocess_folder(in_dir: str | Path, out_dir: str | Path, rules: Rules, *, overwrite: bool = False,
                       progress=None) -> list[Path]:
    """Apply ``rules`` to every label map in ``in_dir``, written with the same name and geometry to ``out_dir``.
    Everything is checked (files present, outputs free) before the first file is written."""
    from salseg.dataset.io import read_label, write_image
    from salseg.errors import DataError
    from salseg.infer.inputs import check_outputs
    from salseg.lock import folder_lock

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    files = label_files(in_dir)
    if not files:
        raise DataError(f"{in_dir}: no label maps to postprocess")
    outputs = [out_dir / p.name for p in files.values()]
    check_outputs(out_dir, [(c, [p]) for c, p in files.items()], outputs, overwrite)
    written = []
    with folder_lock(out_dir, f"output folder {out_dir}"):
        for i, (case, path) in enumerate(files.items()):
            seg, props = read_label(path)
            write_image(rules.apply(seg).astype(seg.dtype, copy=False), props, out_dir / path.name)
            written.append(out_dir / path.name)
            if progress:
                progress("postprocessing", i + 1, len(files))
    return written


# ---------------------------------------------------------------------------------------------------- predicting
STAGING = ".salseg-raw"  # hidden folder inside the output folder: raw label maps before postprocessing


def predict_postprocessed(predictor, rules: Rules, inputs, out_dir, *, save_probabilities: bool = False,
                          diffusion=None, progress=None, overwrite: bool = False, resume: bool = False,
                          num_parts: int = 1, part_id: int = 0, rules_source: str = "the postprocessing rules",
                          **kwargs):
    """``predictor.predict_files`` followed by ``rules`` on every label map, with the same large-cohort behaviour:
    the raw outputs go to ``out_dir/.salseg-raw/`` (predicted there with every option of ``predict_files``, Ray
    included), then each case's label map is postprocessed into ``out_dir`` (atomically) and its other files
    (probabilities, uncertainty) moved beside it. ``resume`` skips cases complete in ``out_dir`` and reuses raw
    outputs a killed run left in the staging folder; parts are taken before that, as ``predict_files`` does.
    Rules for other label values than the model's are refused, naming ``rules_source``. Returns
    ``predict_files``' Written with the final label files."""
    from salseg.dataset.io import read_label, write_image
    from salseg.fileio import clean_temp_files
    from salseg.infer.distributed import part_of, split_finished
    from salseg.infer.inputs import check_outputs, collect_cases, output_files
    from salseg.infer.predictor import Written
    from salseg.lock import folder_lock

    check_rules_labels(rules, predictor.label_values, rules_source,
                       f"{predictor.cfg.network}__{predictor.cfg.module}__{predictor.config_name}")
    ending = predictor.cfg.file_ending
    unc = diffusion is not None and diffusion.uncertainty
    out_dir = Path(out_dir)
    staging = out_dir / STAGING

    def outputs(folder, cs):
        return output_files(folder, cs, ending, save_probabilities, unc)

    cases = part_of(collect_cases(inputs, ending, predictor.cfg.in_channels), num_parts, part_id)
    done = []
    if resume:
        cases, done = split_finished(cases, lambda c: outputs(out_dir, [c]))
    check_outputs(out_dir, cases, outputs(out_dir, cases), overwrite or resume)
    if not cases:
        return Written([], skipped=len(done))
    with folder_lock(out_dir, f"prediction folder {out_dir}"):
        clean_temp_files(out_dir)
        raw = predictor.predict_files([files for _, files in cases], staging, save_probabilities=save_probabilities,
                                      diffusion=diffusion, progress=progress, overwrite=True, resume=resume,
                                      **kwargs)
        failed = {case for case, _ in raw.failed}
        ready = [c for c in cases if c[0] not in failed and all(p.exists() for p in outputs(staging, [c]))]
        written = []
        for i, case in enumerate(ready):
            src, dst = outputs(staging, [case]), outputs(out_dir, [case])
            seg, props = read_label(src[0])
            write_image(rules.apply(seg).astype(seg.dtype, copy=False), props, dst[0])
            for a, b in zip(src[1:], dst[1:]):
                os.replace(a, b)
            src[0].unlink()
            written.append(dst[0])
            if progress is not None:
                progress("postprocessing", i + 1, len(ready))
        shutil.rmtree(staging, ignore_errors=True)  # every raw output is used; failed cases left none
    return Written(written, skipped=len(done), failed=raw.failed)
