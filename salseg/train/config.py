"""Defaults and plans helpers of the trainer's run resolution (the RunConfig itself lives in ``salseg.run``)."""

from __future__ import annotations

from pathlib import Path

from salseg.errors import ConfigError
from salseg.fileio import read_json
from salseg.run.config import CONFIG_DIMS

DEFAULT_EPOCHS = 1000
DEFAULT_ITERS = 250
DEFAULT_VAL_EVERY = 10
DEFAULT_LR = {"sgd": 1e-2, "adam": 1e-4, "adamw": 1e-4}
DEFAULT_WD = {"sgd": 3e-5, "adam": 1e-4, "adamw": 1e-2}
POLY_POWER = 0.9  # lr = lr0 * (1 - epoch / epochs) ** POLY_POWER


def load_plans_configuration(plans_path: Path, config: str, plans_name: str = "plans") -> tuple[dict, dict]:
    """(the plans ``plans_name`` of plans.json, its configuration ``config``), with messages naming the file and
    the missing field. ``plans`` is plans.json's top level; other names are its ``named_plans`` (presets)."""
    from salseg.plans import select_plans

    if not plans_path.is_file():
        raise ConfigError(f"{plans_path}: no plans found; run `salseg plan` for this dataset first")
    plans = select_plans(read_json(plans_path), plans_name, str(plans_path))
    for key in ("configurations", "label_values", "num_channels"):
        if key not in plans:
            raise ConfigError(f"{plans_path}: missing field {key!r}")
    confs = plans["configurations"]
    if config not in confs:
        raise ConfigError(f"{plans_path}: no configuration {config!r}; the plans have "
                          f"{', '.join(sorted(confs)) or 'none'}")
    conf = dict(confs[config])
    for key in ("patch_size", "batch_size"):
        if key not in conf:
            raise ConfigError(f"{plans_path}: configuration {config!r} is missing field {key!r}")
    conf.setdefault("dim", CONFIG_DIMS.get(config, len(conf["patch_size"])))
    conf.setdefault("data_identifier", "2d" if config == "2.5d" else config)
    return plans, conf


def retopologise(conf: dict, patch: list[int]) -> dict:
    """A plans configuration for a smaller patch: the U-Net pooling/conv kernels and features recomputed by the
    planner's own rule, the patch rounded down to a multiple of the new total stride."""
    conf = dict(conf, patch_size=list(patch))
    if "pool_op_kernel_sizes" not in conf:
        return conf
    from salseg.plan.topology import features_per_stage, pool_and_conv_kernels

    spacing = conf.get("spacing")
    spacing = list(spacing[-len(patch):]) if spacing and len(spacing) >= len(patch) else [1.0] * len(patch)
    for _ in range(4):
        pools, kernels, stride = pool_and_conv_kernels(spacing, patch)
        rounded = [max(s, p // s * s) for p, s in zip(patch, stride)]
        if rounded == list(patch):
            break
        patch = rounded
    conf.update(patch_size=list(patch), pool_op_kernel_sizes=pools, conv_kernel_sizes=kernels)
    if conf.get("features_per_stage"):
        conf["features_per_stage"] = features_per_stage(len(pools), len(patch))
    n = len(pools)
    if conf.get("n_blocks_per_stage"):  # per-stage counts follow the stages (nnU-Net's ResEnc pattern)
        from salseg.nets.resenc import RESENC_BLOCKS

        blocks = list(conf["n_blocks_per_stage"])[:n]
        conf["n_blocks_per_stage"] = blocks + list(RESENC_BLOCKS[len(blocks):n])
    if conf.get("n_conv_per_stage"):
        conf["n_conv_per_stage"] = [conf["n_conv_per_stage"][0]] * n
    if conf.get("n_conv_per_stage_decoder"):
        conf["n_conv_per_stage_decoder"] = [conf["n_conv_per_stage_decoder"][0]] * (n - 1)
    return conf
