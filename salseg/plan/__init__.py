"""Planning: fingerprint, planner (spacing, patch, batch, topology), splits, plans schema.

``plan_dataset(root, dataset)`` checks the raw dataset, fingerprints it and writes ``fingerprint.json``,
``plans.json`` and ``splits.json`` under ``preprocessed/<dataset>/`` (docs/formats.md); ``load_plans`` reads the
validated plans back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

from salseg.plan.schema import Configuration, Plans, load_plans, validate_plans

log = logging.getLogger(__name__)


def plan_dataset(root: str | Path, dataset: str, *, gpu_memory_gb: float = 8.0, configs: Sequence[str] | None = None,
                 num_workers: int = 1, seed: int = 0,
                 progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Check, fingerprint and plan ``dataset`` (name, full name or id); returns the plans dict written."""
    import salseg
    from salseg.dataset.cases import list_cases
    from salseg.dataset.check import assert_dataset_ok
    from salseg.dataset.dataset_json import load_dataset_json
    from salseg.dataset.naming import resolve_dataset
    from salseg.errors import ConfigError, DataError
    from salseg.fileio import write_json
    from salseg.plan.fingerprint import compute_fingerprint
    from salseg.plan.planner import plan_configurations
    from salseg.plan.splits import make_splits
    from salseg.results import fingerprint_file, plans_file, raw_dir, splits_file

    if gpu_memory_gb <= 0:
        raise ConfigError(f"--gpu-memory must be positive, got {gpu_memory_gb}")
    root = Path(root)
    name = resolve_dataset(root, dataset)
    raw = raw_dir(root, name)
    assert_dataset_ok(raw, num_workers=num_workers, progress=progress)
    info = load_dataset_json(raw)
    cases = [c for c in list_cases(raw, info, "Tr") if c.images and c.label is not None]
    if not cases:
        raise DataError(f"{raw / 'imagesTr'}: no labelled training cases")
    fp = compute_fingerprint(name, info, cases, num_workers=num_workers, seed=seed, progress=progress)
    planned = plan_configurations(fp, channel_names=info.channel_names, labels=info.labels,
                                  gpu_memory_gb=gpu_memory_gb, configs=configs)
    label_values = info.label_values
    plans = {
        "dataset_name": name,
        "salseg_version": salseg.__version__,
        "seed": int(seed),
        "gpu_memory_gb": float(gpu_memory_gb),
        "num_channels": int(fp["num_channels"]),
        "num_classes": len(label_values),
        "labels": dict(info.labels),
        "label_values": label_values,
        "channel_names": dict(info.channel_names),
        "file_ending": info.file_ending,
        "original_median_spacing": planned["original_median_spacing"],
        "original_median_shape": planned["original_median_shape"],
        "is_2d": bool(fp["is_2d"]),
        "configurations": planned["configurations"],
    }
    plans = validate_plans(plans, str(plans_file(root, name)))
    splits = make_splits(fp["cases"], info.groups, seed=seed)
    write_json(fingerprint_file(root, name), fp)
    write_json(splits_file(root, name), splits)
    write_json(plans_file(root, name), plans)
    log.info("planned %s: %s", name, ", ".join(plans["configurations"]))
    return plans


__all__ = ["Configuration", "Plans", "load_plans", "plan_dataset", "validate_plans"]
