"""A run's config, resolved once from what the user asked (:class:`~salseg.train.settings.TrainSettings`), then only
changed by explicit, logged steps.

Where each training value comes from — the first source that has it wins (:func:`resolve_run_config`, the only
place that applies this order):

1. the user: every value set in ``TrainSettings`` (not None);
2. on a CPU, the CPU recipe (salseg.train.cpu_defaults): caps on batch size, patch size, iterations and epochs, the
   unet width and a slice head's features, and for unet its optimizer, lr, weight decay and warm-up;
3. the network's recipe (``NetworkEntry.recipe``: optimizer, lr, weight decay, momentum, Nesterov, batch and patch
   size);
4. the plans configuration (patch and batch size; a fixed-size network's own input size) and salseg's defaults
   (``DEFAULT_*`` of salseg.train.config; lr and weight decay follow the optimizer).

:func:`make_run_config` reads the inputs (plans.json, dataset.json, the network's registry entry) and logs what
the resolution notes; :func:`resolve_run_config` itself reads no file and logs nothing. After it the RunConfig is
frozen: the trainer's later changes (the built model's sampler mode and deep supervision, the protocol, the
validation set-up, a time budget's epochs and validation interval, a resumed run's new epochs) go through
:func:`revise`, which returns a new config and logs the change (``salseg -v``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from salseg import __version__
from salseg import results as R
from salseg.checks import check_multiple
from salseg.errors import ConfigError
from salseg.nets.capabilities import capabilities_of
from salseg.run.config import CONFIG_DIMS, OPTIMIZERS, RunConfig
from salseg.plans import Plans, default_network, read_plans
from salseg.train.config import (DEFAULT_EPOCHS, DEFAULT_ITERS, DEFAULT_LR, DEFAULT_OPTIMIZER, DEFAULT_SEED,
                                 DEFAULT_VAL_EVERY, DEFAULT_WARMUP, DEFAULT_WD, retopologise)
from salseg.train.cpu_defaults import CPU_RECIPE, cpu_defaults, describe
from salseg.train.settings import TrainSettings

log = logging.getLogger(__name__)

RECIPE_KEYS = ("optimizer", "lr", "weight_decay", "momentum", "nesterov", "batch_size", "patch_size")


@dataclass(frozen=True)
class RunInputs:
    """What the resolution reads besides the settings (loaded by :func:`make_run_config`)."""
    dataset: str                     # the dataset's folder name
    network: str                     # the network (the plans' own when the settings name none)
    plans: Plans                     # the selected plans (plans.json's top level or a named preset)
    configuration: dict              # its configuration ``settings.config`` (the run's own copy)
    recipe: dict                     # the network's recipe
    fixed_size: tuple | None         # the network's only input size, if any
    divisor: int                     # the network's total stride
    slice_module: bool               # the module is a slice module
    file_ending: str                 # the raw dataset's file ending
    device: str                      # "cpu" or "cuda"
    world_size: int
    default_workers: int             # loader workers when the user gives none


def make_run_config(root: Path, settings: TrainSettings, device, world_size: int, *, main: bool = True) -> RunConfig:
    """The run's config from the dataset's files, the network's registry entry and ``settings``; ``main``: this
    process logs (rank 0 of a torchrun job)."""
    cfg, notes = resolve_run_config(settings, load_run_inputs(root, settings, device.type, world_size))
    if main:
        for level, text in notes:
            log.log(level, text)
    return cfg


def load_run_inputs(root: Path, settings: TrainSettings, device: str, world_size: int) -> RunInputs:
    from salseg.dataset import load_dataset_json, resolve_dataset
    from salseg.nets import check_pair, get_module, get_network
    from salseg.train.augment import default_workers

    ds = resolve_dataset(root, settings.dataset)
    config = settings.config
    if config not in CONFIG_DIMS:
        raise ConfigError(f"unknown configuration {config!r}; choose one of {', '.join(CONFIG_DIMS)}")
    network = settings.network
    if network is None:  # the network the plans were sized for: unet for `plans`, resenc for the ResEnc presets
        network = default_network(root, ds, settings.plans_name)
    entry = get_network(network)
    check_pair(network, settings.module, CONFIG_DIMS[config])  # before the plans: an invalid pair is said first
    plans = read_plans(R.plans_file(root, ds), settings.plans_name)
    return RunInputs(dataset=ds, network=network, plans=plans, configuration=plans.configuration(config).to_dict(),
                     recipe=dict(entry.recipe),
                     fixed_size=entry.fixed_size, divisor=entry.divisor,
                     slice_module=get_module(settings.module).kind == "slice",
                     file_ending=load_dataset_json(R.raw_dir(root, ds)).file_ending, device=device,
                     world_size=world_size, default_workers=default_workers(device))


def resolve_run_config(settings: TrainSettings, src: RunInputs) -> tuple[RunConfig, list[tuple[int, str]]]:
    """(the run's config, the log lines it calls for as (level, text)): user > CPU recipe > network recipe > plans."""
    notes: list[tuple[int, str]] = []
    user = settings.given()
    network, plans, conf = src.network, src.plans, dict(src.configuration)
    dim = int(conf["dim"])
    # 4. plans and defaults < 3. the network's recipe < 1. the user (the CPU recipe, 2., fills what the user left)
    s = {"batch_size": conf["batch_size"], "patch_size": src.fixed_size or conf["patch_size"],
         "iters_per_epoch": DEFAULT_ITERS, "epochs": DEFAULT_EPOCHS, "optimizer": DEFAULT_OPTIMIZER,
         "warmup_epochs": DEFAULT_WARMUP,
         "momentum": 0.99, "nesterov": True}
    s.update({k: src.recipe[k] for k in RECIPE_KEYS if k in src.recipe and (k != "patch_size" or src.recipe[k])})
    s.update({k: v for k, v in user.items() if k in s or k in ("lr", "weight_decay")})
    if s["optimizer"] not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {s['optimizer']!r}; choose one of {', '.join(OPTIMIZERS)}")
    s.setdefault("lr", DEFAULT_LR[s["optimizer"]])
    s.setdefault("weight_decay", DEFAULT_WD[s["optimizer"]])
    s.update(batch_size=int(s["batch_size"]), patch_size=[int(p) for p in s["patch_size"]],
             iters_per_epoch=int(s["iters_per_epoch"]), epochs=int(s["epochs"]), lr=float(s["lr"]),
             weight_decay=float(s["weight_decay"]), warmup_epochs=int(s["warmup_epochs"]))
    s["options"] = dict(user.get("options", {}))
    if len(s["patch_size"]) != dim:
        raise ConfigError(f"patch size {s['patch_size']} has {len(s['patch_size'])} axes; {settings.config} "
                          f"needs {dim}")
    if "width" in user:
        s["options"]["width"] = int(user["width"])
    deep_supervision = bool(settings.deep_supervision)
    if "deep_supervision" in s["options"]:  # `-o deep_supervision=...` is the run option, not a network option
        deep_supervision = _as_bool(s["options"].pop("deep_supervision"))
    applied = _cpu_layer(s, user, settings, src, dim, notes) if src.device == "cpu" else {}
    if "patch_size" in user:  # the user's size is trained as given or refused, never rounded
        check_user_patch(conf, s["patch_size"], src)
    if s["patch_size"] != list(conf["patch_size"]):
        conf = retopologise(conf, s["patch_size"])
        s["patch_size"] = list(conf["patch_size"])
        if "patch_size" in applied:
            applied["patch_size"] = s["patch_size"]
    conf["plans_name"] = settings.plans_name
    conf["batch_size"] = s["batch_size"] = _module_batch(conf, s["batch_size"], user, src, applied,
                                                         settings.module, settings.position,
                                                         len(plans.label_values), notes)
    epochs, budget = s["epochs"], settings.time_budget
    cfg = RunConfig(
        dataset=src.dataset, network=network, module=settings.module, config=settings.config, fold=settings.fold,
        configuration=conf, label_values=list(plans.label_values), in_channels=plans.num_channels,
        num_classes=plans.label_spec.num_outputs, label_spec=plans.label_spec.to_json(), dim=dim,
        mode="3d" if dim == 3 else "2d", neighbours=1,
        data_identifier=str(conf["data_identifier"]), file_ending=src.file_ending, epochs=epochs,
        iters_per_epoch=s["iters_per_epoch"], batch_size=s["batch_size"], patch_size=s["patch_size"],
        lr=s["lr"], optimizer=s["optimizer"], weight_decay=s["weight_decay"], warmup_epochs=s["warmup_epochs"],
        momentum=float(s["momentum"]), nesterov=bool(s["nesterov"]), seed=int(user.get("seed", DEFAULT_SEED)),
        device=src.device, workers=int(user.get("workers", src.default_workers)),
        val_every=int(user.get("val_every", min(DEFAULT_VAL_EVERY, epochs))), options=s["options"],
        salseg_version=__version__, cpu_defaults_applied=applied, world_size=src.world_size,
        position=settings.position, deep_supervision=deep_supervision,
        save_probabilities=bool(settings.save_probabilities),
        augment_device=str(settings.augment_device or ""), time_budget=float(budget) if budget else None,
        epochs_planned=(epochs if "epochs" in user else None) if budget else None)
    cfg.validate(f"settings for {network}+{settings.module} on {src.dataset}")
    if (plans.network or network) != network:  # said from the final values, with where each came from: a statement of
        # what was applied (INFO), not a warning, since `salseg train DATASET mtunet` on default plans is the documented use
        notes.insert(0, (logging.INFO, other_plans_note(cfg, src, user, applied, settings.plans_name)))
    return cfg, notes


def other_plans_note(cfg: RunConfig, src: RunInputs, user: dict, applied: dict, plans_name: str) -> str:
    """The note for plans sized for another network: the patch and batch the run applies, and their source."""
    planned = src.configuration
    if "patch_size" in user:
        patch_from = "set by the user"
    elif "patch_size" in applied:
        patch_from = f"CPU recipe {CPU_RECIPE.name}"
    elif src.fixed_size:
        patch_from = f"{cfg.network}'s fixed input size"
    elif src.recipe.get("patch_size"):
        patch_from = f"{cfg.network}'s recipe"
    else:
        patch_from = "the plans'"
    patch = "x".join(map(str, cfg.patch_size))
    plan_patch = "x".join(map(str, planned["patch_size"]))
    return (f"plans {plans_name!r} were sized for {src.plans.network}; training {cfg.network} with patch {patch} "
            f"({patch_from}; plans {plan_patch}) and batch {cfg.batch_size} "
            f"({cfg.configuration.get('batch_size_reason', 'planned')}; plans {planned['batch_size']})")


def check_user_patch(conf: dict, patch: list[int], src: RunInputs) -> None:
    """``--patch-size`` must be a multiple of the network's stride: the registry's divisor, and for a plans-driven
    U-Net the total stride of the topology the planner's rule gives that patch (salseg.plan.topology)."""
    check_multiple(patch, [src.divisor] * len(patch), "--patch-size", src.network)
    if "pool_op_kernel_sizes" in conf:
        from salseg.plan.topology import pool_and_conv_kernels

        spacing = conf.get("spacing")
        spacing = list(spacing[-len(patch):]) if spacing and len(spacing) >= len(patch) else [1.0] * len(patch)
        check_multiple(patch, pool_and_conv_kernels(spacing, patch)[2], "--patch-size",
                       f"the {src.network} topology planned for it")


def _cpu_layer(s: dict, user: dict, settings: TrainSettings, src: RunInputs, dim: int, notes: list) -> dict:
    """Apply the CPU recipe to ``s`` where the user set nothing; returns config.json's ``cpu_defaults_applied``."""
    user_set = set(user) | ({"width"} if "width" in s["options"] else set())
    changed = cpu_defaults(s, user_set, dim, fixed_size=src.fixed_size, divisor=src.divisor, network=src.network,
                           slice_module=src.slice_module)
    if settings.time_budget and "epochs" not in user:
        changed.pop("epochs", None)  # the budget decides the epochs
    for k, (_, new) in changed.items():
        if k in ("width", "features"):
            s["options"][k] = new
        else:
            s[k] = new
    applied = {k: new for k, (_, new) in changed.items()}
    if changed:
        applied["recipe"] = CPU_RECIPE.name
        notes.append((logging.INFO, describe(changed)))
    return applied


def _module_batch(conf: dict, batch: int, user: dict, src: RunInputs, applied: dict, module: str, position: str,
                  num_classes: int, notes: list) -> int:
    """The batch size, sized for a slice module's real cost when it comes from the plans (salseg.plan.memory);
    ``conf["batch_size_reason"]`` (recorded in config.json) says where it came from."""
    from salseg.plan.memory import slice_module_batch

    if "batch_size" in user:
        conf["batch_size_reason"] = "set by the user"
    elif "batch_size" in applied:
        conf["batch_size_reason"] = "CPU default"
    elif "batch_size" in src.recipe:
        conf["batch_size_reason"] = "the network's recipe"
    elif conf.get("batch_size_reason"):   # the 2.5d plans: already sized for every slice-module position
        pass
    elif src.slice_module:  # a slice module on a configuration planned for one slice
        batch, conf["batch_size_reason"] = slice_module_batch(dict(conf, batch_size=batch), num_classes, position,
                                                              int(conf.get("neighbours") or 3), module)
        notes.append((logging.WARNING, f"batch {batch} sized for {module} at position {position} on "
                                       f"{conf.get('plans_name', 'plans')!r} plans made for one slice per sample; "
                                       f"a 'none' arm on the same configuration trains with another batch (use "
                                       f"--config 2.5d, whose plans fit every arm)"))
    else:
        conf["batch_size_reason"] = f"planned ({conf.get('plans_name', 'plans')})"
    return int(batch)


def _as_bool(value) -> bool:
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    return bool(value)


# ------------------------------------------------------------------------------------- steps after the resolution
def revise(cfg: RunConfig, step: str, **changes) -> RunConfig:
    """A new config with ``changes``; the fields that really change are logged (debug) under ``step``."""
    diff = {k: v for k, v in changes.items() if getattr(cfg, k) != v}
    if diff:
        log.debug("config step %s: %s", step, ", ".join(f"{k} {_short(getattr(cfg, k))} -> {_short(v)}"
                                                        for k, v in diff.items()))
    return dataclasses.replace(cfg, **changes) if diff else cfg


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def finish_model_config(cfg: RunConfig, model: nn.Module, given_patch: bool = False) -> RunConfig:
    """The config with what the built model decides: slice models get K neighbouring slices (as the predictor
    does); deep supervision as applied (a network without auxiliary outputs records false); the patch size a
    multiple of the model's declared divisor (``given_patch``: the user set it)."""
    caps = capabilities_of(model)
    spec = cfg.labels
    if caps.diffusion and (spec.has_regions or spec.ignore is not None):
        what = "regions" if spec.has_regions else f"an ignore label ({spec.ignore})"
        raise ConfigError(f"{cfg.network} is a diffusion model: it denoises a one-hot class mask and cannot train on "
                          f"{what}; use a segmentation network (unet, mtunet, swinunet, ...)")
    changes = {"deep_supervision": caps.deep_supervision}
    if caps.is_slice_model:
        if cfg.dim != 2:
            raise ConfigError(f"{cfg.module} is a slice model; it needs a 2D configuration (2d or 2.5d)")
        changes.update(mode="2.5d", neighbours=caps.slice_k)
    if caps.divisor:
        check_multiple(cfg.patch_size, caps.divisor, "--patch-size" if given_patch else "plans patch size",
                       cfg.network)
    return revise(cfg, "model", **changes)
