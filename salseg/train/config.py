"""Defaults and the patch-size helper of the trainer's run resolution (the RunConfig itself lives in ``salseg.run``;
plans are read through ``salseg.plans``)."""

from __future__ import annotations

DEFAULT_EPOCHS = 1000
DEFAULT_ITERS = 250
DEFAULT_VAL_EVERY = 10
DEFAULT_WARMUP = 0
DEFAULT_OPTIMIZER = "sgd"
DEFAULT_SEED = 0
DEFAULT_LR = {"sgd": 1e-2, "adam": 1e-4, "adamw": 1e-4}
DEFAULT_WD = {"sgd": 3e-5, "adam": 1e-4, "adamw": 1e-2}
POLY_POWER = 0.9  # lr = lr0 * (1 - epoch / epochs) ** POLY_POWER


def help_defaults() -> dict[str, str]:
    """The defaults ``train --help`` (and ``bench run --help``) states, per option, from the constants the
    resolution (salseg.train.resolve) applies: salseg's defaults, and on a CPU the CPU recipe's values."""
    from salseg.train.cpu_defaults import CPU_RECIPE as C

    cpu = f"on a CPU ({C.name} recipe)"
    lrs = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
    return {
        "epochs": f"default {DEFAULT_EPOCHS}; {cpu} {C.epochs}",
        "iters_per_epoch": f"default {DEFAULT_ITERS}; {cpu} {C.iters_per_epoch}",
        "warmup_epochs": f"default {DEFAULT_WARMUP}; {cpu} {C.warmup_epochs} for unet",
        "optimizer": f"default {DEFAULT_OPTIMIZER} or the network's recipe; {cpu} {C.optimizer} for unet",
        "lr": f"default by optimizer ({lrs}) or the network's recipe; {cpu} {C.lr:g} for unet",
        "batch_size": f"default: the plans' or the network's recipe; {cpu} at most {C.batch_size}",
        "patch_size": (f"default: the plans'; {cpu} each axis at most "
                       + " / ".join(f"{v} ({k}D)" for k, v in sorted(C.patch.items()))),
        "val_every": f"default {DEFAULT_VAL_EVERY}, at most the epochs",
        "seed": f"default {DEFAULT_SEED}",
        "width": f"unet: default the plans'; {cpu} {C.unet_width}",
    }


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
