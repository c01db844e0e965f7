"""``train``: one network (+ module) on one fold of a preprocessed dataset, into the standard result folder.

Per epoch: ``iters_per_epoch`` augmented batches (background workers unless ``workers == 0``), loss 0.5 CE +
0.5 soft Dice with deep supervision (or the network's own ``training_loss`` for diffusion models), AMP and
channels-last on CUDA only, gradient clipping, poly learning-rate schedule stepped per epoch. Every ``val_every``
epochs (and after the last) the WHOLE validation cases are predicted by sliding window and scored per class on the
preprocessed grid; the best mean foreground Dice gives ``checkpoint_best.pt``. ``checkpoint_latest.pt`` is written
atomically after every epoch, so a killed run loses at most one epoch and ``resume=True`` finishes the planned
epochs. Only rank 0 of a torchrun job writes files and reports progress.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from salseg import __version__
from salseg import results as R
from salseg.errors import ConfigError, DataError, RunFailed, SalsegError
from salseg.fileio import append_jsonl
from salseg.plan.splits import fold_cases
from salseg.preprocess.freshness import assert_fresh, check_preprocessed, plans_hash
from salseg.train import distributed as D
from salseg.train.augment import default_workers, run_batches, training_pipeline
from salseg.nets.capabilities import capabilities_of
from salseg.nets.modules.positions import check_position
from salseg.run.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from salseg.run.config import CONFIG_DIMS, OPTIMIZERS, RunConfig
from salseg.run.model import build_model
from salseg.plans import read_plans
from salseg.train.config import (DEFAULT_EPOCHS, DEFAULT_ITERS, DEFAULT_LR, DEFAULT_VAL_EVERY, DEFAULT_WD,
                                 retopologise)
from salseg.train.budget import (BudgetClock, format_duration, load_scheduler_state, make_scheduler,
                                 move_schedule_end, set_total)
from salseg.train.cpu_defaults import CPU_RECIPE, cpu_defaults, describe
from salseg.train.data import load_cases
from salseg.train.losses import DeepSupervisionLoss, DiceCELoss
from salseg.train.protocol import attach_protocol
from salseg.train.report import IN_TRAINING, rewrite_log, validation_protocols, write_progress_png
from salseg.train.lock import lock_fold, run_locks
from salseg.train.resume import apply_resume_settings, describe as describe_resume
from salseg.train.validation import dice_per_class, validate, validation_sampling  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------------------------------- set-up
def resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SalsegError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(device)


def make_run_config(root: Path, dataset: str, network: str, module: str, config: str, fold: int | str,
                    settings: dict, device: torch.device, world_size: int) -> RunConfig:
    """Plans + recipe + CLI (+ CPU defaults) -> the run's config. ``settings`` holds only what the user gave."""
    from salseg.dataset import load_dataset_json, resolve_dataset
    from salseg.nets import check_pair, get_module, get_network

    ds = resolve_dataset(root, dataset)
    if config not in CONFIG_DIMS:
        raise ConfigError(f"unknown configuration {config!r}; choose one of {', '.join(CONFIG_DIMS)}")
    plans_name = str(settings.get("plans") or "plans")
    if network is None:  # the network the plans were sized for: unet for `plans`, resenc for the ResEnc presets
        network = str(read_plans(R.plans_file(root, ds), plans_name).network or "unet")
    entry = get_network(network)
    check_pair(network, module, CONFIG_DIMS[config])  # before the plans: an invalid pair is the first thing to say
    plans = read_plans(R.plans_file(root, ds), plans_name)
    conf = plans.configuration(config).to_dict()  # the run's own copy: config.json records it as trained
    if (plans.network or network) != network and D.env_rank() == 0:
        log.warning("plans %r were sized for %s; training %s with their patch and batch size", plans_name,
                    plans.network, network)
    dim = int(conf["dim"])
    info = load_dataset_json(R.raw_dir(root, ds))
    user = set(settings)
    recipe = dict(entry.recipe)
    opt = settings.get("optimizer", recipe.get("optimizer", "sgd"))
    if opt not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {opt!r}; choose one of {', '.join(OPTIMIZERS)}")
    patch = settings.get("patch_size") or recipe.get("patch_size") or entry.fixed_size or conf["patch_size"]
    s = {
        "batch_size": int(settings.get("batch_size", recipe.get("batch_size", conf["batch_size"]))),
        "patch_size": [int(p) for p in patch],
        "iters_per_epoch": int(settings.get("iters_per_epoch", DEFAULT_ITERS)),
        "epochs": int(settings.get("epochs", DEFAULT_EPOCHS)),
        "options": dict(settings.get("options", {})),
        "optimizer": opt,
        "lr": float(settings.get("lr", recipe.get("lr", DEFAULT_LR[opt]))),
        "weight_decay": float(settings.get("weight_decay", recipe.get("weight_decay", DEFAULT_WD[opt]))),
        "warmup_epochs": int(settings.get("warmup_epochs", 0)),
    }
    budget = settings.get("time_budget")
    if len(s["patch_size"]) != dim:
        raise ConfigError(f"patch size {s['patch_size']} has {len(s['patch_size'])} axes; {config} needs {dim}")
    if "width" in settings:
        s["options"]["width"] = int(settings["width"])
    if "deep_supervision" in s["options"]:  # `-o deep_supervision=...` is the run option, not a network option
        settings = dict(settings, deep_supervision=_as_bool(s["options"].pop("deep_supervision")))
    applied = {}
    if device.type == "cpu":
        changed = cpu_defaults(s, user | ({"width"} if "width" in s["options"] else set()), dim,
                               fixed_size=entry.fixed_size, divisor=entry.divisor, network=network,
                               slice_module=get_module(module).kind == "slice")
        if budget and "epochs" not in user:
            changed.pop("epochs", None)  # the budget decides the epochs
        for k, (_, new) in changed.items():
            if k in ("width", "features"):
                s["options"][k] = new
            else:
                s[k] = new
        applied = {k: new for k, (_, new) in changed.items()}
        if changed:
            applied["recipe"] = CPU_RECIPE.name
        if changed and D.env_rank() == 0:
            log.info(describe(changed))
    if s["patch_size"] != list(conf["patch_size"]):
        conf = retopologise(conf, s["patch_size"])
        s["patch_size"] = list(conf["patch_size"])
        if "patch_size" in applied:
            applied["patch_size"] = s["patch_size"]
    conf["plans_name"] = plans_name
    s["batch_size"] = _module_batch(conf, s["batch_size"], user, recipe, applied, module,
                                    str(settings.get("position", "head")), len(plans.label_values))
    conf["batch_size"] = s["batch_size"]
    epochs = s["epochs"]
    cfg = RunConfig(
        dataset=ds, network=network, module=module, config=config, fold=fold, plans=conf,
        label_values=list(plans.label_values), in_channels=plans.num_channels,
        num_classes=len(plans.label_values), dim=dim, mode="3d" if dim == 3 else "2d", neighbours=1,
        data_identifier=str(conf["data_identifier"]), file_ending=info.file_ending, epochs=epochs,
        iters_per_epoch=s["iters_per_epoch"], batch_size=s["batch_size"], patch_size=s["patch_size"],
        lr=s["lr"], optimizer=s["optimizer"], weight_decay=s["weight_decay"], warmup_epochs=s["warmup_epochs"],
        momentum=float(recipe.get("momentum", 0.99)), nesterov=bool(recipe.get("nesterov", True)), seed=int(settings.get("seed", 0)), device=device.type,
        workers=int(settings.get("workers", default_workers(device.type))),
        val_every=int(settings.get("val_every", min(DEFAULT_VAL_EVERY, epochs))), options=s["options"],
        salseg_version=__version__, cpu_defaults_applied=applied, world_size=world_size,
        position=str(settings.get("position", "head")),
        deep_supervision=bool(settings.get("deep_supervision", True)),
        augment_device=str(settings.get("augment_device") or ""),
        time_budget=float(budget) if budget else None,
        epochs_planned=(epochs if "epochs" in user else None) if budget else None)
    cfg.validate(f"settings for {network}+{module} on {ds}")
    return cfg


def _module_batch(conf: dict, batch: int, user: set, recipe: dict, applied: dict, module: str, position: str,
                  num_classes: int) -> int:
    """The batch size, sized for a slice module's real cost when it comes from the plans (salseg.plan.memory);
    ``conf["batch_size_reason"]`` (recorded in config.json) says where it came from."""
    from salseg.nets import get_module
    from salseg.plan.memory import slice_module_batch

    if "batch_size" in user:
        conf["batch_size_reason"] = "set by the user"
    elif "batch_size" in applied:
        conf["batch_size_reason"] = "CPU default"
    elif "batch_size" in recipe:
        conf["batch_size_reason"] = "the network's recipe"
    elif conf.get("batch_size_reason"):   # the 2.5d plans: already sized for every slice-module position
        pass
    elif get_module(module).kind == "slice":  # a slice module on a configuration planned for one slice
        batch, conf["batch_size_reason"] = slice_module_batch(dict(conf, batch_size=batch), num_classes, position,
                                                              int(conf.get("neighbours") or 3), module)
        if D.env_rank() == 0:
            log.warning("batch %d sized for %s at position %s on %r plans made for one slice per sample; a 'none' "
                        "arm on the same configuration trains with another batch (use --config 2.5d, whose "
                        "plans fit every arm)", batch, module, position, conf.get("plans_name", "plans"))
    else:
        conf["batch_size_reason"] = f"planned ({conf.get('plans_name', 'plans')})"
    return int(batch)


def _as_bool(value) -> bool:
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    return bool(value)


def finish_model_config(cfg: RunConfig, model: nn.Module) -> None:
    """Sampler mode and K from the built model: slice models get K neighbouring slices (as the predictor does);
    deep supervision as applied (a network without auxiliary outputs records false)."""
    caps = capabilities_of(model)
    cfg.deep_supervision = caps.deep_supervision
    if caps.is_slice_model:
        if cfg.dim != 2:
            raise ConfigError(f"{cfg.module} is a slice model; it needs a 2D configuration (2d or 2.5d)")
        cfg.mode, cfg.neighbours = "2.5d", caps.slice_k
    divisor = caps.divisor
    if divisor:
        bad = [(p, d) for p, d in zip(cfg.patch_size, divisor) if p % d]
        if bad:
            raise ConfigError(f"patch size {cfg.patch_size} is not a multiple of the network's total stride "
                              f"{list(divisor)}")


class TrainStep(nn.Module):
    """Network + loss as one module (so DDP sees one forward): returns the scalar training loss."""

    def __init__(self, model: nn.Module, loss: nn.Module):
        super().__init__()
        self.model, self.loss = model, loss
        self.diffusion = capabilities_of(model).diffusion

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.diffusion:
            return self.model.training_loss(x, target[:, 0].clamp_min(0))
        return self.loss(self.model(x), target)


def make_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


# --------------------------------------------------------------------------------------------------- training
def train(root, dataset: str, network: str | None, module: str = "none", *, config: str = "2d", fold: int | str = 0,
          epochs: int | None = None, iters_per_epoch: int | None = None, batch_size: int | None = None,
          patch_size: Sequence[int] | None = None, lr: float | None = None, optimizer: str | None = None,
          weight_decay: float | None = None, device: str = "auto", seed: int | None = None,
          workers: int | None = None, val_every: int | None = None, width: int | None = None,
          options: dict | None = None, resume: bool = False, progress: Progress | None = None,
          epoch_hook: Callable[[int, dict], None] | None = None, time_budget: float | None = None,
          position: str = "head", deep_supervision: bool = True, plans: str = "plans",
          warmup_epochs: int | None = None, augment_device: str | None = None) -> Path:
    """Train and return the fold's result folder. ``None`` arguments take the recipe / plans / CPU defaults.

    ``seed`` S > 0 trains into ``fold_<f>_seed<S>`` (seed 0: ``fold_<f>``; salseg.results.fold_dir).
    ``plans``: the plans name in plans.json (``plans``, or a preset's such as ``plans_resencm``); ``network=None``
    trains the network those plans were sized for (``unet`` / ``resenc``).
    ``position``: where a slice module sits (head, bottleneck, skip, parallel; salseg.nets.modules.positions);
    a non-head position adds ``@<position>`` to the result folder name. ``deep_supervision``: train on the
    network's auxiliary low-resolution outputs where it has them (config.json records it as applied).
    ``epoch_hook(epoch, record)`` is called after each finished epoch (after its checkpoint is written).
    ``augment_device`` ("cpu"/"cuda"; None = batchgenerators in the loader workers) augments whole batches with
    torch on that device (salseg.train.gpu_augment).
    ``time_budget`` (seconds of training): the epochs are fitted to it after every epoch (salseg.train.budget;
    ``epochs`` is then an upper limit, without it the budget alone decides) and the poly schedule ends with the
    last epoch that fits. ``warmup_epochs``: linear learning-rate warm-up before the poly decay.
    """
    root = R.resolve_root(root)
    settings = {k: v for k, v in dict(epochs=epochs, iters_per_epoch=iters_per_epoch, batch_size=batch_size,
                                      patch_size=list(patch_size) if patch_size else None, lr=lr,
                                      optimizer=optimizer, weight_decay=weight_decay, seed=seed, workers=workers,
                                      val_every=val_every, width=width, warmup_epochs=warmup_epochs,
                                      time_budget=time_budget, augment_device=augment_device).items()
                if v is not None}
    if time_budget is not None and not time_budget > 0:
        raise ConfigError(f"time budget must be a positive number of seconds, got {time_budget!r}")
    if options:
        settings["options"] = dict(options)
    settings["position"] = position or "head"
    settings["plans"] = plans or "plans"
    settings["deep_supervision"] = bool(deep_supervision)
    dev = resolve_device(device)
    dist = D.init_distributed(dev)
    if dist.enabled and dev.type == "cuda":
        dev = torch.device("cuda", dist.local_rank)
    try:
        with run_locks(), contextlib.ExitStack() as resources:  # the fold's lock; the run's data loader
            return _train(root, dataset, network, module, config, fold, settings, dev, dist, resume, progress,
                          epoch_hook, resources)
    finally:
        D.shutdown(dist)


def make_run_augmenter(cfg: RunConfig, transforms, dev: torch.device):
    """The batched augmenter of ``cfg.augment_device`` (None: batchgenerators in the loader workers)."""
    if not cfg.augment_device:
        return None
    from salseg.train.gpu_augment import make_augmenter

    device = dev if cfg.augment_device == "cuda" and dev.type == "cuda" else cfg.augment_device
    return make_augmenter(transforms, cfg.patch_size, cfg.dim, device, cfg.seed)


def fit_to_budget(cfg: RunConfig, clock: BudgetClock, sched, current: int, session_seconds: float, dist, dev) -> None:
    """After training epoch ``current``: the total epochs that fit the budget, the same on every rank; the poly
    schedule is moved to end with it."""
    fitted = clock.fit(current, session_seconds)
    fitted = int(round(D.mean_over_ranks(float(fitted), dist, dev)))
    if fitted != cfg.epochs:
        if dist.is_main:
            (log.info if current == clock.start_epoch + 1 else log.debug)(
                "time budget %s: %d epochs fit (%.1f s per epoch)", format_duration(cfg.time_budget), fitted,
                clock.epoch_seconds(current, session_seconds))
        cfg.epochs = fitted
        set_total(sched, fitted)


def _train(root, dataset, network, module, config, fold, settings, dev, dist, resume, progress, epoch_hook,
           resources: contextlib.ExitStack | None = None):
    cfg = make_run_config(root, dataset, network, module, config, fold, settings, dev, dist.world_size)
    network = cfg.network  # None -> the plans' network
    out = R.fold_dir(root, cfg.dataset, network, module, config, fold, position=cfg.position, seed=cfg.seed)
    latest = out / R.CHECKPOINT_LATEST
    if dist.is_main:
        lock_fold(out)  # one writer per fold folder; before the checkpoint is read
    ckpt, resumed = None, None
    if resume:
        if not latest.is_file():
            raise DataError(f"{latest}: nothing to continue (no checkpoint_latest.pt); start without --continue")
        ckpt = load_checkpoint(latest)
        saved = RunConfig.from_dict(ckpt["config"], str(latest))
        check_position(saved.position, cfg.position, latest)
        resumed = apply_resume_settings(saved, settings, int(ckpt["epoch"]), latest)
        if "time_budget" in settings:  # a new budget for the whole run (the epochs already trained count)
            saved.time_budget, saved.epochs_planned = cfg.time_budget, cfg.epochs_planned
        saved.device, saved.world_size = cfg.device, cfg.world_size
        cfg = saved
    train_ids, val_ids = fold_cases(root, cfg.dataset, cfg.fold)
    folder = R.config_dir(root, cfg.dataset, cfg.data_identifier)
    check_preprocessed(folder, train_ids + val_ids)
    assert_fresh(folder, train_ids + val_ids, plans_hash(cfg.plans, cfg.label_values, cfg.in_channels), cfg.config,
                 cfg.dataset)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    finish_model_config(cfg, model)
    if not (ckpt is not None and cfg.protocol and "epochs" not in settings):  # a resumed run keeps its recipe
        attach_protocol(cfg, diffusion=capabilities_of(model).diffusion)  # + cfg.time_budget
    cuda = dev.type == "cuda"
    fmt = (torch.channels_last if cfg.dim == 2 else torch.channels_last_3d) if cuda else torch.contiguous_format
    model = model.to(dev, memory_format=fmt)
    step_module: nn.Module = TrainStep(model, DeepSupervisionLoss(DiceCELoss()))
    if dist.enabled:
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=[dev.index] if cuda else None)
    opt = make_optimizer(cfg, model.parameters())
    sched = make_scheduler(opt, cfg.epochs, cfg.warmup_epochs)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    start, best = 0, None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        load_scheduler_state(sched, ckpt["scheduler"])
        if resumed is not None:
            lr_next = move_schedule_end(opt, sched, int(ckpt["epoch"]), cfg.epochs)
            if dist.is_main:
                log.info(describe_resume(resumed, lr_next))
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start, best = int(ckpt["epoch"]), ckpt.get("best_dice")
        set_rng_state(ckpt["rng"])
    cfg.validation = validation_protocols(cfg, len(val_ids), capabilities_of(model).diffusion) if val_ids else {}
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / R.CONFIG_JSON)
        records = rewrite_log(out / R.LOG_JSONL, keep_until=start)
        log.info("training %s + %s (%s, fold %s) on %s: %d train / %d val cases -> %s", network, module, config,
                 cfg.fold, dev, len(train_ids), len(val_ids), out)
        for name, how in cfg.validation.items():
            log.info("%s: %s", name, how)
    sampler, transforms = training_pipeline(load_cases(folder, train_ids), cfg)
    stream = (resources or contextlib.ExitStack()).enter_context(run_batches(
        sampler, transforms, cfg.iters_per_epoch, [cfg.seed, dist.rank], range(start, cfg.epochs), cfg.workers,
        pin_memory=cuda, augmenter=make_run_augmenter(cfg, transforms, dev)))

    clock = None
    if cfg.time_budget:
        clock = BudgetClock(cfg.time_budget, cfg.epochs_planned, cfg.val_every, start,
                            sum(float(r.get("epoch_time", 0.0)) for r in records) if dist.is_main else 0.0)
        clock.spent_before = D.mean_over_ranks(clock.spent_before * dist.world_size, dist, dev)  # rank 0's value
    t_begin = time.perf_counter()
    for epoch in itertools.count(start):
        if epoch >= cfg.epochs:  # the planned (or budget-fitted) epochs are done
            break
        t0 = time.perf_counter()
        lr_now = opt.param_groups[0]["lr"]
        step_module.train()
        losses = []
        with contextlib.nullcontext(stream.epoch(epoch)) as batches:
            for it, batch in enumerate(batches):
                x = batch["data"].to(dev, non_blocking=True)
                if cuda and x.ndim == cfg.dim + 2:
                    x = x.contiguous(memory_format=fmt)
                y = batch["target"].to(dev, non_blocking=True)
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, enabled=cuda):
                    loss = step_module(x, y)
                if not torch.isfinite(loss):
                    raise RunFailed(f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, iteration "
                                      f"{it + 1}; try a lower --lr")
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                if capabilities_of(model).ema:  # e.g. LDSeg's EMA copy of its denoiser
                    model.ema_update()
                losses.append(float(loss.detach()))
                if progress and dist.is_main:
                    progress(f"epoch {epoch + 1}/{cfg.epochs}", it + 1, cfg.iters_per_epoch)
        if clock:
            fit_to_budget(cfg, clock, sched, epoch + 1, time.perf_counter() - t_begin, dist, dev)
        sched.step()
        record = {"epoch": epoch + 1, "train_loss": D.mean_over_ranks(float(np.mean(losses)), dist, dev),
                  "lr": lr_now}
        last = epoch + 1 == cfg.epochs
        if val_ids and ((epoch + 1) % cfg.val_every == 0 or last):
            t_val = time.perf_counter()
            if dist.is_main:
                per_class, mean = validate(model, cfg, folder, val_ids, dev)
                record["val_dice"] = {str(v): d for v, d in zip(cfg.label_values[1:], per_class)}
                record["mean_fg_dice"] = mean
            D.barrier(dist)
            record["val_time"] = time.perf_counter() - t_val
            if clock and not last:
                clock.add_validation(record["val_time"])
                if "val_every" not in settings:
                    sparser = clock.sparser_val_every(epoch + 1, time.perf_counter() - t_begin)
                    cfg.val_every = clock.val_every = int(round(D.mean_over_ranks(sparser, dist, dev)))
        record["epoch_time"] = time.perf_counter() - t0
        if dist.is_main:
            mean = record.get("mean_fg_dice")
            improved = mean is not None and (best is None or mean > best)
            if improved:
                best = mean
            state = dict(model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                         scaler=scaler.state_dict(), epoch=epoch + 1, best_dice=best, rng=rng_state(),
                         config=cfg.to_dict(), salseg_version=__version__)
            append_jsonl(out / R.LOG_JSONL, record)
            save_checkpoint(latest, **state)
            if improved or (not val_ids and last):
                save_checkpoint(out / R.CHECKPOINT_BEST, **state)
            records.append(record)
            write_progress_png(out / R.PROGRESS_PNG, records)
            log.info("epoch %d/%d: loss %.4f%s, %.1f s", epoch + 1, cfg.epochs, record["train_loss"],
                     "" if mean is None else f", {IN_TRAINING} {mean:.4f}", record["epoch_time"])
        D.barrier(dist)
        if epoch_hook:
            epoch_hook(epoch + 1, record)

    if dist.is_main:
        if clock:
            cfg.epochs_chosen = cfg.epochs
            closing = records[-1].get("val_time", 0.0) if records else 0.0
            log.info("time budget %s: trained %d epochs in %.0f s (+ %.0f s closing validation)",
                     format_duration(cfg.time_budget), cfg.epochs,
                     clock.spent_before + time.perf_counter() - t_begin - closing, closing)
        cfg.save(out / R.CONFIG_JSON)  # a time budget may have changed the epochs
        state = dict(model=model.state_dict(), epoch=cfg.epochs, best_dice=best, config=cfg.to_dict(),
                     salseg_version=__version__)
        save_checkpoint(out / R.CHECKPOINT_FINAL, **state)
        if not (out / R.CHECKPOINT_BEST).is_file():
            save_checkpoint(out / R.CHECKPOINT_BEST, **state)
        if val_ids:
            from salseg.train.report import export_validation
            export_validation(model, cfg, root, folder, val_ids, out / R.VALIDATION_DIR, dev, progress,
                              sampling=validation_sampling(model))
    D.barrier(dist)
    return out
