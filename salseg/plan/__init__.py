"""Planning: fingerprint, planner (spacing, patch, batch, topology), splits.

``plan_dataset(root, dataset)`` checks the raw dataset, fingerprints it and writes ``fingerprint.json``,
``plans.json`` and ``splits.json`` under ``preprocessed/<dataset>/`` (docs/formats.md); :mod:`salseg.plans` (below
plan/ and preprocess/) reads the validated plans back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

from salseg.plans import DEFAULT_PLANS, NAMED_PLANS, select_plans, validate_plans
from salseg.protocol import protocol_hash

log = logging.getLogger(__name__)


def plan_dataset(root: str | Path, dataset: str, *, gpu_memory_gb: float | None = None,
                 configs: Sequence[str] | None = None, num_workers: int = 1, seed: int = 0, preset: str = "default",
                 progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Check, fingerprint and plan ``dataset`` (name, full name or id) with planner ``preset`` (default, resenc-m,
    resenc-l, resenc-xl); returns the plans written under the preset's plans name (see ``select_plans``).

    ``plans.json`` keeps one plans per name: the default preset is its top level (``plans``), the others live in
    ``named_plans``. Planning one preset keeps the others when they were planned from the same fingerprint (a
    changed fingerprint drops them, logged). A non-default preset on a dataset without default plans writes those
    too, so every reader of the top level keeps working.
    """
    from salseg.checks import finite
    from salseg.dataset.cases import list_cases
    from salseg.dataset.check import assert_dataset_ok
    from salseg.dataset.dataset_json import load_dataset_json
    from salseg.dataset.labels import missing_region_values
    from salseg.dataset.naming import resolve_dataset
    from salseg.errors import ConfigError, DataError
    from salseg.fileio import write_json
    from salseg.plan.fingerprint import compute_fingerprint
    from salseg.plan.presets import get_preset
    from salseg.plan.splits import make_splits
    from salseg.results import fingerprint_file, plans_file, raw_dir, splits_file

    chosen = get_preset(preset)
    if gpu_memory_gb is not None and finite(gpu_memory_gb, "--gpu-memory") <= 0:
        raise ConfigError(f"--gpu-memory must be positive, got {gpu_memory_gb}")
    if gpu_memory_gb is not None and gpu_memory_gb != chosen.gpu_memory_gb and chosen.name != "default":
        log.warning("preset %s is made for %.0f GB; planning it for %.1f GB scales its reference (as nnU-Net "
                    "does with a non-standard gpu_memory_target_in_gb)", chosen.name, chosen.gpu_memory_gb,
                    gpu_memory_gb)
    root = Path(root)
    name = resolve_dataset(root, dataset)
    raw = raw_dir(root, name)
    assert_dataset_ok(raw, num_workers=num_workers, progress=progress)
    info = load_dataset_json(raw)
    cases = [c for c in list_cases(raw, info, "Tr") if c.images and c.label is not None]
    if not cases:
        raise DataError(f"{raw / 'imagesTr'}: no labelled training cases")
    fp = compute_fingerprint(name, info, cases, num_workers=num_workers, seed=seed, progress=progress)
    for region, value in missing_region_values(info.label_spec, fp["class_voxel_counts"]):
        log.warning("%s: region %r names label value %d, which no label map contains", raw / "dataset.json",
                    region, value)
    path = plans_file(root, name)
    existing = _existing_plans(path)
    fp_hash = protocol_hash(fp)
    same_fp = existing is not None and existing.get("fingerprint_hash") == fp_hash
    entry, medians = _planned(fp, info, chosen, gpu_memory_gb, configs)
    if chosen.plans_name == DEFAULT_PLANS or not same_fp:
        top = entry if chosen.plans_name == DEFAULT_PLANS else _planned(fp, info, get_preset("default"), None,
                                                                        None)[0]
        plans = {**_dataset_fields(name, fp, info, seed, fp_hash, medians), **top}
    else:
        plans = {k: v for k, v in existing.items() if k != NAMED_PLANS}
    named = dict(existing.get(NAMED_PLANS) or {}) if same_fp else {}
    if existing is not None and not same_fp and existing.get(NAMED_PLANS):
        log.warning("%s: the fingerprint changed; dropping the plans planned from the old one (%s)", path,
                    ", ".join(sorted(existing[NAMED_PLANS])))
    if chosen.plans_name != DEFAULT_PLANS:
        named[chosen.plans_name] = entry
    if named:
        plans[NAMED_PLANS] = named
    plans = validate_plans(plans, str(path))
    splits = make_splits(fp["cases"], info.groups, seed=seed)
    write_json(fingerprint_file(root, name), fp)
    write_json(splits_file(root, name), splits)
    write_json(path, plans)
    log.info("planned %s (%s): %s", name, chosen.plans_name, ", ".join(plans["configurations"]))
    return select_plans(plans, chosen.plans_name, str(path))


def _existing_plans(path: Path) -> dict | None:
    from salseg.errors import SalsegError
    from salseg.fileio import read_json

    if not path.is_file():
        return None
    try:
        return validate_plans(read_json(path), str(path))
    except SalsegError as e:  # an unreadable old file is replaced, not merged
        log.warning("%s: replacing unreadable plans (%s)", path, e)
        return None


def _planned(fp: dict, info, preset, gpu_memory_gb: float | None, configs) -> tuple[dict, dict]:
    """(one preset's part of plans.json: its configurations and what it was planned for, the dataset medians)."""
    from salseg.plan.planner import plan_configurations

    gpu = preset.gpu_memory_gb if gpu_memory_gb is None else float(gpu_memory_gb)
    planned = plan_configurations(fp, channel_names=info.channel_names, labels=info.labels, gpu_memory_gb=gpu,
                                  configs=configs, preset=preset.name, num_training=info.num_training)
    entry = {"preset": preset.name, "network": preset.network, "gpu_memory_gb": gpu,
             "configurations": planned.pop("configurations")}
    return entry, planned


def _dataset_fields(name: str, fp: dict, info, seed: int, fp_hash: str, medians: dict) -> dict:
    import salseg

    return {
        "dataset_name": name,
        "plans_name": DEFAULT_PLANS,
        "salseg_version": salseg.__version__,
        "seed": int(seed),
        "num_channels": int(fp["num_channels"]),
        "num_classes": len(info.label_values),
        "labels": info.label_names_by_name(),
        "label_values": info.label_values,
        "label_spec": info.label_spec.to_json(),
        "channel_names": dict(info.channel_names),
        "file_ending": info.file_ending,
        "original_median_spacing": medians["original_median_spacing"],
        "original_median_shape": medians["original_median_shape"],
        "nnunet_transpose_forward": medians["nnunet_transpose_forward"],
        "is_2d": bool(fp["is_2d"]),
        "fingerprint_hash": fp_hash,
    }


__all__ = ["plan_dataset"]
