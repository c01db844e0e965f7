"""Predicting with several models at once (configurations, networks, modules): each model's fold ensemble predicts a
case on its own preprocessed grid, its probabilities are taken back to the image grid, and the models' probabilities
are averaged there, unweighted — the same mean as ``salseg ensemble`` over their saved probabilities. The label map
is the argmax in label values, optionally postprocessed (salseg.infer.postprocess rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from salseg.errors import ConfigError

Progress = Callable[[str, int, int], None]


def parse_model_spec(spec: str, default_config: str = "2d") -> tuple[str, str, str]:
    """``NETWORK[:MODULE[:CONFIG]]`` (or a result folder name ``NETWORK__MODULE__CONFIG``) -> (network, module,
    config); module defaults to none, config to ``default_config``."""
    parts = spec.split("__") if "__" in spec else spec.split(":")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise ConfigError(f"model {spec!r}: expected NETWORK[:MODULE[:CONFIG]], e.g. unet:stack:2.5d")
    network, module, config = (parts + ["none", default_config][len(parts) - 1:])[:3]
    return network, module, config


def check_members(predictors: Sequence) -> None:
    """The models of one ensemble predict the same labels from the same channels (a clear line otherwise)."""
    first = predictors[0]
    for p in predictors[1:]:
        name = f"{p.cfg.network}__{p.cfg.module}__{p.cfg.config}"
        if list(p.label_values) != list(first.label_values):
            raise ConfigError(f"{name}: label values {p.label_values} differ from {first.cfg.network}__"
                              f"{first.cfg.module}__{first.cfg.config}'s {first.label_values}")
        if p.cfg.in_channels != first.cfg.in_channels:
            raise ConfigError(f"{name}: {p.cfg.in_channels} input channels, the first model has "
                              f"{first.cfg.in_channels}")
    for p in predictors:
        if p.cfg.labels.has_regions:
            raise ConfigError("region models: ensemble their saved probabilities with salseg ensemble")
        if p.is_diffusion and len(predictors) > 1:
            raise ConfigError(f"{p.cfg.network} is a diffusion network: predict it alone with --save-probabilities "
                              f"and average with salseg ensemble")


def predict_models(predictors: Sequence, inputs, out_dir, *, step: float = 0.5, mirroring: bool = True,
                   save_probabilities: bool = False, rules=None, overwrite: bool = False,
                   progress: Progress | None = None) -> list[Path]:
    """Every case of ``inputs`` predicted by every model, averaged on the image grid, into ``out_dir``. Inputs,
    models and outputs are checked before anything is written."""
    from salseg.dataset.io import write_image
    from salseg.fileio import clean_temp_files, write_json, write_npz
    from salseg.infer.ensemble import labels_of, mean_probabilities
    from salseg.infer.export import probabilities_path, properties_path, revert_torch
    from salseg.infer.inputs import check_outputs, collect_cases, output_files, validate_cases
    from salseg.infer.predictor import expected_ndim
    from salseg.lock import folder_lock

    if not 0 < step <= 1:
        raise ConfigError(f"--step must be in (0, 1], got {step}")
    check_members(predictors)
    first = predictors[0]
    labels = list(first.label_values)
    if rules is not None and sorted(rules.label_values) != sorted(labels):
        raise ConfigError(f"postprocessing rules for labels {rules.label_values}, but the models predict {labels}")
    ending = first.cfg.file_ending
    cases = collect_cases(inputs, ending, first.cfg.in_channels)
    validate_cases(cases, first.cfg.in_channels, expected_ndim(first.plans, first.config_name))
    out_dir = Path(out_dir)
    check_outputs(out_dir, cases, output_files(out_dir, cases, ending, save_probabilities, False), overwrite)
    written = []
    with folder_lock(out_dir, f"prediction folder {out_dir}"):
        clean_temp_files(out_dir)
        for i, (case, files) in enumerate(cases):
            if progress is not None:
                progress("predicting cases", i, len(cases))
            full, original = [], None
            for p in predictors:
                probs, properties, _ = p.predict_case(files, step=step, mirroring=mirroring)
                full.append(revert_torch(probs, properties, p.device))
                original = properties["original"]
            mean = mean_probabilities(full) if len(full) > 1 else np.asarray(full[0], np.float32)
            seg = labels_of(mean, labels, None)
            if rules is not None:
                seg = rules.apply(seg)
            out = out_dir / f"{case}{ending}"
            if save_probabilities:
                write_npz(probabilities_path(out), probabilities=mean, label_values=np.asarray(labels, np.int64))
                write_json(properties_path(out), {"case_id": case, "original": original, "label_values": labels,
                                                  "file_ending": ending})
            write_image(seg, original, out)
            written.append(out)
        if progress is not None:
            progress("predicting cases", len(cases), len(cases))
    return written
