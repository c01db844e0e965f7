"""``train``: one network (+ module) on one fold of a preprocessed dataset, into the standard result folder.

Per epoch: ``iters_per_epoch`` augmented batches (background workers unless ``workers == 0``), loss 0.5 CE +
0.5 soft Dice with deep supervision (or the network's own ``training_loss`` for diffusion models), AMP and
channels-last on CUDA only, gradient clipping, poly learning-rate schedule stepped per epoch. Every ``val_every``
epochs (and after the last, unless a time budget's closing validation scores it) the WHOLE validation cases are
predicted by sliding window and scored per class on the preprocessed grid; the best mean foreground Dice gives
``checkpoint_best.pt``. ``checkpoint_latest.pt`` is written atomically after every epoch, so a killed run loses at
most one epoch and ``resume=True`` finishes the planned epochs. Only rank 0 of a torchrun job writes files and
reports progress.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from salseg import __version__
from salseg import results as R
from salseg.errors import ConfigError, DataError, RunFailed, SalsegError
from salseg.fileio import append_jsonl
from salseg.nets.capabilities import capabilities_of
from salseg.nets.modules.positions import check_position
from salseg.parallel import threads_for_busy_machine
from salseg.plan.splits import fold_cases
from salseg.preprocess.freshness import assert_fresh, check_preprocessed, plans_hash
from salseg.run.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, weights_only
from salseg.run import identity
from salseg.run.config import RunConfig
from salseg.run.model import build_model
from salseg.train import distributed as D
from salseg.train.augment import run_batches, training_pipeline
from salseg.train.budget import (BudgetClock, IterationBudget, budget_lr_factor, closing_record, closing_windows,
                                 describe_closing, epochs_text, format_duration, load_scheduler_state,
                                 make_scheduler, move_schedule_end, set_total)
from salseg.train.checks import check_finite_weights
from salseg.train.data import load_cases
from salseg.train.lock import lock_fold, run_locks
from salseg.train.losses import make_loss
from salseg.train.targets import output_keys, output_names
from salseg.train.protocol import attach_protocol
from salseg.train.report import (IN_TRAINING, progress_title, rewrite_log, validation_protocols,
                                 write_progress_png)
from salseg.train.resolve import finish_model_config, make_run_config, revise
from salseg.train.resume import apply_resume_settings, describe as describe_resume
from salseg.train.settings import TrainSettings
from salseg.train.validation import dice_per_class, time_one_window, validate, validation_sampling  # noqa: F401

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
def train(root, settings: TrainSettings, *, resume: bool = False, progress: Progress | None = None,
          epoch_hook: Callable[[int, dict], None] | None = None, trainer: type[Trainer] | None = None,
          overwrite: bool = False) -> Path:
    """Train the run ``settings`` describes (salseg.train.settings) and return its fold folder.

    ``resume``: continue from ``checkpoint_latest.pt`` (salseg.train.resume says which settings may change).
    ``epoch_hook(epoch, record)`` is called after each finished epoch (after its checkpoint is written).
    ``trainer``: a :class:`Trainer` subclass that overrides one of its stages.
    ``overwrite``: a fold folder holding a finished run is refused (ConfigError) unless this is set; then the new
    run trains in a hidden sibling that replaces the finished run only when it has finished (salseg.run.identity).
    """
    if not settings.dataset:
        raise ConfigError("no dataset given to train")
    root = R.resolve_root(root)
    dev = resolve_device(settings.device)
    dist = D.init_distributed(dev)
    if dist.enabled and dev.type == "cuda":
        dev = torch.device("cuda", dist.local_rank)
    try:
        # a time budget on a busy CPU: fewer torch threads than cores, as the other processes leave free
        busy = threads_for_busy_machine("this time-budgeted run") if settings.time_budget and dev.type == "cpu" \
            else contextlib.nullcontext()
        with run_locks(), busy, contextlib.ExitStack() as resources:  # the fold's lock; the run's data loader
            run = (trainer or Trainer)(root, settings, dev, dist, resume=resume, progress=progress,
                                       epoch_hook=epoch_hook, resources=resources, overwrite=overwrite)
            return run.run()
    finally:
        D.shutdown(dist)


def make_run_augmenter(cfg: RunConfig, transforms, dev: torch.device):
    """The batched augmenter of ``cfg.augment_device`` (None: batchgenerators in the loader workers)."""
    if not cfg.augment_device:
        return None
    from salseg.train.gpu_augment import make_augmenter

    device = dev if cfg.augment_device == "cuda" and dev.type == "cuda" else cfg.augment_device
    return make_augmenter(transforms, cfg.patch_size, cfg.dim, device, cfg.seed)


class Trainer:
    """One training run in four stages, each a method a variant may override (as nnU-Net's ``nnUNetTrainer``):

    - set-up (:meth:`setup`): the run config (resolved once, then only revised), the fold folder and its lock, a
      checkpoint to continue, the cases, the network (:meth:`build_network`), loss (:meth:`build_loss`),
      optimizer (:meth:`build_optimizer`) and schedule (:meth:`build_scheduler`), config.json, the data stream;
    - epoch (:meth:`train_epoch`, one iteration: :meth:`train_step`), then the time budget's fit and the schedule's
      step (:meth:`end_training_epoch`);
    - validation (:meth:`validate_epoch`, every ``val_every`` epochs and after the last);
    - after each epoch :meth:`save_epoch` (log.jsonl, checkpoints, progress.png, the epoch hook); at the end
      :meth:`finish` (final config, checkpoint_final.pt, the validation export).

    ``self.cfg`` is the run's config; every change after the resolution goes through
    :func:`~salseg.train.resolve.revise` (a new frozen config, logged).
    """

    def __init__(self, root: Path, settings: TrainSettings, device: torch.device, dist: D.DistInfo, *,
                 resume: bool = False, progress: Progress | None = None,
                 epoch_hook: Callable[[int, dict], None] | None = None,
                 resources: contextlib.ExitStack | None = None, overwrite: bool = False):
        self.root, self.settings, self.device, self.dist = root, settings, device, dist
        self.overwrite = overwrite
        self.resume, self.progress, self.epoch_hook = resume, progress, epoch_hook
        self.resources = resources or contextlib.ExitStack()
        self.given = settings.given()
        self.cuda = device.type == "cuda"
        self.records: list[dict] = []
        self.start, self.best, self.clock, self.iter_budget = 0, None, None, None

    # ------------------------------------------------------------------------------------------------- the run
    def run(self) -> Path:
        try:
            return self._run()
        except BaseException:  # interrupted or failed: an --overwrite run's folder goes, the finished run stays
            if getattr(self, "final_out", None) is not None and self.out != self.final_out and self.dist.is_main:
                identity.discard(self.out)
            raise

    def _run(self) -> Path:
        self.setup()
        self.t_begin = time.perf_counter()
        epoch = self.start
        while epoch < self.cfg.epochs:  # the planned (or budget-fitted) epochs
            t0 = time.perf_counter()
            record = self.train_epoch(epoch)
            last = epoch + 1 == self.cfg.epochs
            if self.val_ids and last and self.iter_budget is not None:
                record["validation"] = "closing"  # under a budget the closing validation scores the last epoch
            elif self.val_ids and ((epoch + 1) % self.cfg.val_every == 0 or last):
                self.validate_epoch(epoch + 1, record, last)
            record["epoch_time"] = time.perf_counter() - t0
            self.save_epoch(epoch + 1, record, last)
            epoch += 1
        self.finish()
        return self.out

    # ------------------------------------------------------------------------------------------------- set-up
    def setup(self) -> None:
        self.setup_config()
        self.setup_cases()
        self.setup_model()
        self.setup_optimizer()
        self.restore()
        self.write_run_files()
        self.setup_data()

    def setup_config(self) -> None:
        """The resolved config, the fold folder (locked), and for ``resume`` the checkpoint's own config."""
        cfg = make_run_config(self.root, self.settings, self.device, self.dist.world_size, main=self.dist.is_main)
        self.out = R.fold_dir(self.root, cfg.dataset, cfg.network, cfg.module, cfg.config, cfg.fold,
                              position=cfg.position, seed=cfg.seed)
        if self.dist.is_main:
            lock_fold(self.out)  # one writer per fold folder; before the checkpoint is read
        self.final_out = self.out
        if not self.resume and identity.has_final(self.out):  # a finished run is replaced only when asked
            if not self.overwrite:
                raise ConfigError(f"{self.out}: holds a finished run (checkpoint_final.pt); add --overwrite to "
                                  f"replace it once the new run has finished (an interrupted or failed run keeps "
                                  f"it), or --continue to train it further")
            self.out = identity.staging_dir(self.final_out)
            if self.dist.is_main:
                identity.discard(self.out)  # a stale, unfinished --overwrite run
        self.ckpt, self.resumed = None, None
        if self.resume:
            latest = self.out / R.CHECKPOINT_LATEST
            if not latest.is_file():
                raise DataError(f"{latest}: nothing to continue (no checkpoint_latest.pt; a finished fold keeps "
                                f"it only with --keep-latest); start without --continue")
            self.ckpt = load_checkpoint(latest)
            saved = RunConfig.from_dict(self.ckpt["config"], str(latest))
            check_position(saved.position, cfg.position, latest)
            saved, self.resumed = apply_resume_settings(saved, self.given, int(self.ckpt["epoch"]), latest)
            changes = dict(device=cfg.device, world_size=cfg.world_size)
            if "time_budget" in self.given:  # a new budget for the whole run (the epochs already trained count)
                changes.update(time_budget=cfg.time_budget, epochs_planned=cfg.epochs_planned)
            cfg = revise(saved, "resume", **changes)
        self.cfg = revise(cfg, "run id", run_id=cfg.run_id or identity.new_run_id())  # --continue keeps its id

    def setup_cases(self) -> None:
        cfg = self.cfg
        self.train_ids, self.val_ids = fold_cases(self.root, cfg.dataset, cfg.fold)
        self.folder = R.config_dir(self.root, cfg.dataset, cfg.data_identifier)
        check_preprocessed(self.folder, self.train_ids + self.val_ids)
        assert_fresh(self.folder, self.train_ids + self.val_ids,
                     plans_hash(cfg.configuration, cfg.label_values, cfg.in_channels), cfg.config, cfg.dataset)

    def setup_model(self) -> None:
        """The network (seeded), the config steps it decides (sampler mode, deep supervision, the protocol), the
        device and memory format, and the training step (network + loss, DDP-wrapped when distributed)."""
        torch.manual_seed(self.cfg.seed)
        model = self.build_network(self.cfg)
        self.cfg = finish_model_config(self.cfg, model, "patch_size" in self.given)
        self.caps = capabilities_of(model)
        self.diffusion = self.caps.diffusion
        if not (self.ckpt is not None and self.cfg.protocol and "epochs" not in self.given):  # resumed: kept
            self.cfg = attach_protocol(self.cfg, diffusion=self.diffusion)  # + cfg.time_budget
        self.fmt = ((torch.channels_last if self.cfg.dim == 2 else torch.channels_last_3d) if self.cuda
                    else torch.contiguous_format)
        self.model = model.to(self.device, memory_format=self.fmt)
        self.step_module: nn.Module = TrainStep(self.model, self.build_loss())
        if self.dist.enabled:
            self.step_module = nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[self.device.index] if self.cuda else None)

    def build_network(self, cfg: RunConfig) -> nn.Module:
        return build_model(cfg)

    def build_loss(self) -> nn.Module:
        return make_loss(self.cfg.labels)

    def build_optimizer(self, params) -> torch.optim.Optimizer:
        return make_optimizer(self.cfg, params)

    def build_scheduler(self, optimizer: torch.optim.Optimizer):
        return make_scheduler(optimizer, self.cfg.epochs, self.cfg.warmup_epochs)

    def setup_optimizer(self) -> None:
        self.optimizer = self.build_optimizer(self.model.parameters())
        self.scheduler = self.build_scheduler(self.optimizer)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)

    def restore(self) -> None:
        """A continued run: weights, optimizer, schedule (moved to the new end when the epochs changed), AMP
        scaler, the epoch to start from, the best Dice so far and the random state."""
        ckpt = self.ckpt
        if ckpt is None:
            return
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        load_scheduler_state(self.scheduler, ckpt["scheduler"])
        if self.resumed is not None:
            lr_next = move_schedule_end(self.optimizer, self.scheduler, int(ckpt["epoch"]), self.cfg.epochs)
            if self.dist.is_main:
                log.info(describe_resume(self.resumed, lr_next))
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start, self.best = int(ckpt["epoch"]), ckpt.get("best_dice")
        set_rng_state(ckpt["rng"])

    def write_run_files(self) -> None:
        """The validation set-up (a config step), config.json and log.jsonl (kept up to the resumed epoch)."""
        cfg = self.cfg
        validation = validation_protocols(cfg, len(self.val_ids), self.diffusion) if self.val_ids else {}
        self.cfg = cfg = revise(cfg, "validation", validation=validation)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg.save(self.out / R.CONFIG_JSON)
            self.records = rewrite_log(self.out / R.LOG_JSONL, keep_until=self.start)
            log.info("training %s + %s (%s, fold %s) on %s: %d train / %d val cases -> %s", cfg.network, cfg.module,
                     cfg.config, cfg.fold, self.device, len(self.train_ids), len(self.val_ids), self.out)
            for name, how in cfg.validation.items():
                log.info("%s: %s", name, how)

    def setup_data(self) -> None:
        """The batch stream (loader workers or in-process) and, under a time budget, its clock."""
        cfg, dist = self.cfg, self.dist
        sampler, transforms = training_pipeline(load_cases(self.folder, self.train_ids), cfg)
        self.stream = self.resources.enter_context(run_batches(
            sampler, transforms, cfg.iters_per_epoch, [cfg.seed, dist.rank], range(self.start, cfg.epochs),
            cfg.workers, pin_memory=self.cuda, augmenter=make_run_augmenter(cfg, transforms, self.device)))
        if cfg.time_budget:
            spent = sum(float(r.get("epoch_time", 0.0)) for r in self.records) if dist.is_main else 0.0
            self.clock = BudgetClock(cfg.time_budget, cfg.epochs_planned, cfg.val_every, self.start, spent)
            self.clock.spent_before = D.mean_over_ranks(self.clock.spent_before * dist.world_size, dist,
                                                        self.device)  # rank 0's value
            import salseg.evaluate  # noqa: F401  (the closing validation's imports are set-up, not its cost)
            import salseg.infer.export  # noqa: F401
            windows, planes = closing_windows(self.folder, self.val_ids, cfg.patch_size)
            self.iter_budget = IterationBudget(
                self.clock, iters_per_epoch=cfg.iters_per_epoch, warmup_epochs=cfg.warmup_epochs,
                batch_size=cfg.batch_size, windows=windows,
                mirror_axes=() if self.diffusion else tuple(range(cfg.dim)), cases=len(self.val_ids))
            if self.val_ids:
                self.iter_budget.timed_window(self.measure_window(planes))

    def measure_window(self, planes: int) -> float:
        """Seconds per window of a validation, timed now on a validation case's slices (the closing estimate)."""
        return time_one_window(self.model, self.cfg, self.device, planes)

    # ------------------------------------------------------------------------------------------------- epoch
    def train_epoch(self, epoch: int) -> dict:
        """Epoch ``epoch`` (0-based): its iterations, then :meth:`end_training_epoch`; returns its log record."""
        lr_now = self.optimizer.param_groups[0]["lr"]
        self.step_module.train()
        losses, stopped, desc = [], False, f"epoch {epoch + 1}/{self.cfg.epochs}"
        with contextlib.nullcontext(self.stream.epoch(epoch)) as batches:
            for it, batch in enumerate(batches):
                if self.iter_budget is not None and not self.budget_step(epoch, it):
                    stopped = True  # the budget is spent: this epoch ends early and is the last
                    break
                if it == 0:
                    lr_now = self.optimizer.param_groups[0]["lr"]
                losses.append(self.train_step(batch, epoch, it))
                if self.progress and self.dist.is_main:
                    self.progress(desc, it + 1, self.cfg.iters_per_epoch)
        self.end_training_epoch(epoch + 1, stopped)
        return {"epoch": epoch + 1, "train_loss": D.mean_over_ranks(float(np.mean(losses)), self.dist, self.device),
                "lr": lr_now}

    def train_step(self, batch: dict, epoch: int, it: int) -> float:
        """One iteration: forward (AMP on CUDA), backward, gradient clipping, the optimizer step; the loss."""
        x = batch["data"].to(self.device, non_blocking=True)
        if self.cuda and x.ndim == self.cfg.dim + 2:
            x = x.contiguous(memory_format=self.fmt)
        y = batch["target"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=self.cuda):
            loss = self.step_module(x, y)
        if not torch.isfinite(loss):
            raise RunFailed(f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, iteration "
                            f"{it + 1}; try a lower --lr")
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.caps.ema:  # e.g. LDSeg's EMA copy of its denoiser
            self.model.ema_update()
        return float(loss.detach())

    def end_training_epoch(self, done: int, stopped: bool = False) -> None:
        """After the iterations of epoch ``done`` (1-based; ``stopped``: the budget ended it early): the weights
        checked finite, the budget's epochs, then the schedule's step."""
        check_finite_weights(self.model, done)
        if self.iter_budget is not None:
            self.budget_epochs(done, stopped)
        self.scheduler.step()

    def budget_step(self, epoch: int, it: int) -> bool:
        """Under a time budget, before iteration ``it`` of epoch ``epoch`` (0-based): False when the budget is
        spent (the first iteration of an epoch always trains); else this iteration's learning rate is set (rank 0
        decides for every rank)."""
        ipe = self.cfg.iters_per_epoch
        i = epoch * ipe + it
        factor = self.iter_budget.step(i, i - self.start * ipe, time.perf_counter() - self.t_begin)
        if factor is None and it == 0:  # an epoch of no iteration would have no loss: one at the schedule's end
            factor = budget_lr_factor(i, i + 1, self.cfg.warmup_epochs, ipe)
        if self.dist.enabled:
            mine = (-1.0 if factor is None else factor) * self.dist.world_size if self.dist.is_main else 0.0
            factor = D.mean_over_ranks(mine, self.dist, self.device)
            factor = None if factor < 0 else factor
        if factor is None:
            return False
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return True

    def budget_epochs(self, done: int, stopped: bool) -> None:
        """The run's epochs after epoch ``done`` under the iteration budget (the same on every rank); the closing
        validation's estimate is announced after the first epoch."""
        b = self.iter_budget
        epochs = int(round(D.mean_over_ranks(float(b.epochs(done, stopped)) * self.dist.world_size
                                             if self.dist.is_main else 0.0, self.dist, self.device)))
        if self.dist.is_main and stopped:
            log.info("time budget %s: spent; epoch %d ends early, at a learning rate of ~0",
                     format_duration(self.cfg.time_budget), done)
        elif self.dist.is_main and done == self.start + 1 and b.total is not None:
            log.info("time budget %s: about %s fit (%.2f s per iteration); %s",
                     format_duration(self.cfg.time_budget), epochs_text(epochs), b.iter_seconds, describe_closing(b))
        if epochs != self.cfg.epochs:
            self.cfg = revise(self.cfg, "time budget", epochs=epochs)
            set_total(self.scheduler, epochs)

    # ------------------------------------------------------------------------------------------------- validation
    def validate_epoch(self, done: int, record: dict, last: bool) -> None:
        """The in-training Dice estimate after epoch ``done`` into ``record``; under a time budget (and without
        the user's --val-every) the interval grows so that validation stays a small share of the time."""
        t_val = time.perf_counter()
        if self.dist.is_main:
            per_class, mean = validate(self.model, self.cfg, self.folder, self.val_ids, self.device)
            record["val_dice"] = dict(zip(output_keys(self.cfg.labels), per_class))
            record["mean_fg_dice"] = mean
        D.barrier(self.dist)
        record["val_time"] = time.perf_counter() - t_val
        if self.iter_budget is not None:
            self.iter_budget.measured_validation(record["val_time"])
        if self.clock and not last:
            self.clock.add_validation(record["val_time"])
            if "val_every" not in self.given:
                sparser = self.clock.sparser_val_every(done, time.perf_counter() - self.t_begin)
                self.clock.val_every = int(round(D.mean_over_ranks(sparser, self.dist, self.device)))
                self.cfg = revise(self.cfg, "time budget", val_every=self.clock.val_every)

    # ------------------------------------------------------------------------------------------------- finish
    def save_epoch(self, done: int, record: dict, last: bool) -> None:
        """Rank 0: log.jsonl, checkpoint_latest.pt (and _best.pt), progress.png, the log line; then the hook."""
        if self.dist.is_main:
            mean = record.get("mean_fg_dice")
            improved = mean is not None and (self.best is None or mean > self.best)
            if improved:
                self.best = mean
            state = dict(model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                         scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(), epoch=done,
                         best_dice=self.best, rng=rng_state(), config=self.cfg.to_dict(), salseg_version=__version__)
            append_jsonl(self.out / R.LOG_JSONL, record)
            save_checkpoint(self.out / R.CHECKPOINT_LATEST, **state)
            if improved or (not self.val_ids and last):
                save_checkpoint(self.out / R.CHECKPOINT_BEST, **weights_only(state))
            self.records.append(record)
            write_progress_png(self.out / R.PROGRESS_PNG, self.records, progress_title(self.cfg),
                               output_names(self.cfg.labels))
            log.info("epoch %d/%d: loss %.4f%s, %.1f s", done, self.cfg.epochs, record["train_loss"],
                     "" if mean is None else f", {IN_TRAINING} {mean:.4f}", record["epoch_time"])
        D.barrier(self.dist)
        if self.epoch_hook:
            self.epoch_hook(done, record)

    def finish(self) -> None:
        """Rank 0: the final config (a budget's chosen epochs), checkpoint_final.pt (and _best.pt if no
        validation chose one), the final validation export."""
        if self.dist.is_main:
            mirror_axes, b = None, self.iter_budget
            if b is not None:
                self.cfg = revise(self.cfg, "time budget", epochs_chosen=self.cfg.epochs)
                if self.val_ids:  # the closing validation, counted inside the budget, as the budget chose it
                    mirror_axes = b.axes
                    self.cfg = revise(self.cfg, "time budget", closing_validation=closing_record(b))
                log.info("time budget %s: trained %s in %.0f s; %s", format_duration(self.cfg.time_budget),
                         epochs_text(self.cfg.epochs), self.clock.spent_before + time.perf_counter() - self.t_begin,
                         describe_closing(b))
            self.cfg.save(self.out / R.CONFIG_JSON)  # a time budget may have changed the epochs
            state = dict(model=self.model.state_dict(), epoch=self.cfg.epochs, best_dice=self.best,
                         config=self.cfg.to_dict(), salseg_version=__version__)
            save_checkpoint(self.out / R.CHECKPOINT_FINAL, **state)
            if not (self.out / R.CHECKPOINT_BEST).is_file():
                save_checkpoint(self.out / R.CHECKPOINT_BEST, **state)
            t_closing = time.perf_counter()
            if self.val_ids:
                from salseg.train.report import export_validation
                export_validation(self.model, self.cfg, self.root, self.folder, self.val_ids,
                                  self.out / R.VALIDATION_DIR, self.device, self.progress,
                                  sampling=validation_sampling(self.model),
                                  save_probabilities=self.cfg.save_probabilities, mirror_axes=mirror_axes)
            if mirror_axes is not None:
                self.cfg = revise(self.cfg, "closing validation", closing_validation=dict(
                    self.cfg.closing_validation, seconds=round(time.perf_counter() - t_closing, 1)))
                self.cfg.save(self.out / R.CONFIG_JSON)
            if not self.settings.keep_latest:  # finished: the weights-only final + best are what is kept
                (self.out / R.CHECKPOINT_LATEST).unlink(missing_ok=True)
            if self.out != self.final_out:  # --overwrite: the finished new run replaces the old one
                identity.replace_run(self.out, self.final_out)
        D.barrier(self.dist)
        self.out = self.final_out
