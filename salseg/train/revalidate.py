"""``validate``: re-run a finished fold's final validation without training (nnU-Net's ``--val``).

The fold's ``config.json`` and ``checkpoint_<final|best>.pt`` rebuild the model; its validation cases come from the
dataset's splits (the same ones the training used); the export and the evaluation are the training's own
(:func:`salseg.train.report.export_validation`), so with the final checkpoint it reproduces
``validation/summary.json``. Outputs: ``validation/`` for the final checkpoint, ``validation_best/`` for the best one;
the fold folder is locked while it runs (a training of the same fold cannot write meanwhile).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from salseg import results as R
from salseg.errors import ConfigError, DataError
from salseg.lock import folder_lock
from salseg.plan.splits import fold_cases
from salseg.preprocess.freshness import assert_fresh, check_preprocessed, plans_hash
from salseg.run.folds import CHECKPOINTS, parse_fold_spec, resolve_result_dataset, trained_folds
from salseg.run.model import load_fold_model
from salseg.train.report import export_validation
from salseg.train.validation import validation_sampling

Progress = Callable[[str, int, int], None]


def validation_dir(fold_dir: Path, checkpoint: str) -> Path:
    """Where a fold's validation of ``checkpoint`` goes: ``validation/`` (final), ``validation_best/`` (best)."""
    return Path(fold_dir) / (R.VALIDATION_DIR if checkpoint == "final" else f"{R.VALIDATION_DIR}_{checkpoint}")


def revalidate(root, dataset: str, network: str, module: str, config: str, fold: str, *,
               checkpoint: str = "final", save_probabilities: bool = False, position: str | None = None,
               device: str = "auto", progress: Progress | None = None) -> tuple[Path, dict]:
    """Predict and score fold ``fold``'s validation cases with its ``checkpoint``; (output folder, summary)."""
    from salseg.train.trainer import resolve_device

    if checkpoint not in ("final", "best"):
        raise ConfigError(f"--checkpoint must be final or best, got {checkpoint!r}")
    parsed = parse_fold_spec(fold)
    if parsed is None:
        raise ConfigError(f"fold {fold!r}: expected a fold number or a seed folder such as 0_seed1")
    root = R.resolve_root(root)
    ds = resolve_result_dataset(root, dataset)
    fdir = R.fold_dir(root, ds, network, module, config, parsed[0], position=position, seed=parsed[1])
    if not (fdir / R.CONFIG_JSON).is_file():
        have = trained_folds(fdir.parent)
        raise DataError(f"{fdir}: no trained fold there (trained folds: {', '.join(have) or 'none'})")
    if not (fdir / CHECKPOINTS[checkpoint]).is_file():
        raise DataError(f"{fdir / CHECKPOINTS[checkpoint]}: not found; has this fold finished training?")
    cfg, model = load_fold_model(fdir, checkpoint)
    _, val_ids = fold_cases(root, cfg.dataset, cfg.fold)
    if not val_ids:
        raise ConfigError(f"{fdir}: fold {cfg.fold} has no validation cases (fold 'all' trains on every case)")
    folder = R.config_dir(root, cfg.dataset, cfg.data_identifier)
    check_preprocessed(folder, val_ids)
    assert_fresh(folder, val_ids, plans_hash(cfg.configuration, cfg.label_values, cfg.in_channels), cfg.config,
                 cfg.dataset)
    dev = resolve_device(device)
    out = validation_dir(fdir, checkpoint)
    with folder_lock(fdir, f"fold folder {fdir.name} of {fdir.parent.name}"):
        summary = export_validation(model.to(dev), cfg, root, folder, val_ids, out, dev, progress,
                                    sampling=validation_sampling(model), save_probabilities=save_probabilities)
    return out, summary

