"""The training protocol of a run (``config.json`` fields ``protocol`` and ``protocol_hash``).

The protocol is everything that defines how a network was trained EXCEPT its context module: the module's name,
its options and its position are left out, so the arms of one comparison (``unet`` with ``none``, ``stack``,
``lstmsa``, ...) trained the same way share one hash, and any difference in the recipe changes it. What it holds:
dataset, configuration, network and the network's own options; optimizer, lr, momentum, weight decay, Nesterov,
poly schedule; planned epochs (before a time budget shortened them), iterations per epoch, batch size, processes,
patch size, the preprocessed data it came from; every augmentation setting (salseg.train.augment.AugmentParams);
deep supervision as applied; the loss; foreground oversampling; gradient clipping; AMP; validation interval; the
CPU-sized defaults applied (network/recipe ones, not a module's width); the time budget if any; salseg's version.
Seeds, folds, devices' names and worker counts are not part of it: they do not change the recipe.
"""

from __future__ import annotations

from salseg.protocol import protocol_hash
from salseg.train.augment import augmentation_params
from salseg.run.config import RunConfig
from salseg.train.config import POLY_POWER
from salseg.train.losses import describe_loss

POSITION_OPTIONS = ("level",)   # options that place a module, not configure the network
PLANS_FIELDS = ("spacing", "normalization")


def module_option_names(module: str, options: dict) -> set[str]:
    """Keys of ``options`` that belong to the module (or its position) rather than to the network."""
    from salseg.nets import get_module

    return {k for k in options if k in get_module(module).options or k in POSITION_OPTIONS}


def build_protocol(cfg: RunConfig, diffusion: bool = False, time_budget: float | None = None) -> dict:
    """The protocol of ``cfg`` (a flat JSON object; nested values are plain lists and dicts). ``time_budget``
    (seconds) defaults to the config's own ``time_budget`` field where it has one."""
    mod_keys = module_option_names(cfg.module, cfg.options) | module_option_names(cfg.module,
                                                                                 cfg.cpu_defaults_applied)
    protocol = {
        "dataset": cfg.dataset, "config": cfg.config, "network": cfg.network,
        "network_options": {k: v for k, v in sorted(cfg.options.items()) if k not in mod_keys},
        "optimizer": cfg.optimizer, "lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay,
        "nesterov": cfg.optimizer == "sgd" and cfg.nesterov, "lr_schedule": {"name": "poly", "power": POLY_POWER, "per": "epoch"},
        "epochs": cfg.epochs, "iters_per_epoch": cfg.iters_per_epoch, "batch_size": cfg.batch_size,
        "world_size": cfg.world_size, "patch_size": list(cfg.patch_size), "data_identifier": cfg.data_identifier,
        "plans": {k: cfg.configuration[k] for k in PLANS_FIELDS if k in cfg.configuration},
        "augmentation": augmentation_params(cfg.patch_size, cfg.dim).to_dict(),
        "deep_supervision": cfg.deep_supervision, "loss": describe_loss(diffusion, cfg.labels),
        "oversample_foreground": cfg.oversample_foreground, "grad_clip": cfg.grad_clip, "amp": cfg.device == "cuda",
        "val_every": cfg.val_every,
        "cpu_defaults_applied": {k: v for k, v in sorted(cfg.cpu_defaults_applied.items()) if k not in mod_keys},
        "salseg_version": cfg.salseg_version,
    }
    if getattr(cfg, "warmup_epochs", 0):  # a warm-up is part of the schedule (absent: none, as before)
        protocol["lr_schedule"]["warmup_epochs"] = int(cfg.warmup_epochs)
    if getattr(cfg, "augment_device", ""):  # batched torch augmentation (interpolation differs from batchgenerators)
        protocol["augment_device"] = cfg.augment_device
    budget = time_budget if time_budget is not None else getattr(cfg, "time_budget", None)
    if budget:
        protocol["time_budget"] = float(budget)
    return protocol


def attach_protocol(cfg: RunConfig, diffusion: bool = False, time_budget: float | None = None) -> RunConfig:
    """``cfg`` with its ``protocol`` and ``protocol_hash`` (a new config: salseg.train.resolve.revise)."""
    from salseg.train.resolve import revise

    protocol = build_protocol(cfg, diffusion, time_budget)
    return revise(cfg, "protocol", protocol=protocol, protocol_hash=protocol_hash(protocol))
