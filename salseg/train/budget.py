"""Time-budgeted training: the duration parser, the learning-rate schedule and the rule that fits the epochs.

- ``parse_duration("1h30m") == 5400.0``: ``90s``, ``10m``, ``1h``, ``1h30m``, ``2.5m``; anything else is a
  :class:`~salseg.errors.ConfigError` naming the text and the accepted form.
- :class:`PolySchedule` is the learning-rate factor per epoch: an optional linear warm-up over ``warmup`` epochs,
  then nnU-Net's poly decay ``(1 - t / T) ** 0.9`` that ends at epoch ``total`` (the last trained epoch has a small
  positive rate, never 0). It is a callable object, so ``LambdaLR``'s state dict saves and restores ``total``:
  a budget that moves the last epoch moves the end of the schedule with it, also across ``--continue``.
  Without warm-up it equals ``torch.optim.lr_scheduler.PolynomialLR(total_iters=total, power=0.9)``.
- :func:`fit_total_epochs` is the budget rule: after each epoch, from the mean measured training time per epoch
  (the first epoch is the first measurement) and the mean time of one validation, the largest total number of
  epochs whose remaining training and periodic validations fit in what is left of the budget. The closing
  validation (after the last epoch) and the validation export are not counted: a run ends within the budget plus
  one validation and the export. Unless ``--val-every`` is given, a budgeted run validates less often once the
  first validation is measured, so that periodic validations take at most ``VAL_SHARE`` of the training time.
"""

from __future__ import annotations

import math
import re

import torch

from salseg.errors import ConfigError
from salseg.train.config import POLY_POWER  # one definition, shared with the protocol

VAL_SHARE = 0.1   # under a budget, periodic validations may take at most this share of the training time
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_duration(text: str, what: str = "--time-budget") -> float:
    """Seconds of a duration written as ``<number><unit>`` parts, units h, m, s in that order (``1h30m``)."""
    raw = str(text).strip().lower().replace(" ", "")
    form = "write it as e.g. 90s, 10m, 1h or 1h30m"
    if not raw:
        raise ConfigError(f"{what}: empty duration; {form}")
    pos, seconds, seen = 0, 0.0, []
    for m in _DURATION.finditer(raw):
        if m.start() != pos:
            break
        seen.append(m.group(2))
        seconds += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(raw) or not seen:
        hint = " (a unit is required)" if re.fullmatch(r"\d+(\.\d+)?", raw) else ""
        raise ConfigError(f"{what}: cannot read {text!r} as a duration{hint}; {form}")
    if len(set(seen)) != len(seen) or seen != sorted(seen, key="hms".index):
        raise ConfigError(f"{what}: {text!r} repeats or reorders its units; {form}")
    if seconds <= 0:
        raise ConfigError(f"{what}: {text!r} is not a positive duration; {form}")
    return seconds


def epochs_text(n: int) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} epoch" + ("" if n == 1 else "s")


def format_duration(seconds: float) -> str:
    """``5400 -> '1h30m'``, ``90 -> '1m30s'``, ``2.5 -> '2.5s'`` (the parser reads it back to the same value)."""
    s = float(seconds)
    h, rest = divmod(s, 3600.0)
    m, sec = divmod(rest, 60.0)
    parts = [f"{int(h)}h"] if h else []
    if m:
        parts.append(f"{int(m)}m")
    if sec or not parts:
        parts.append(f"{sec:g}s")
    return "".join(parts)


class PolySchedule:
    """Learning-rate factor of epoch ``e`` (0-based) for a run of ``total`` epochs with ``warmup`` warm-up epochs."""

    def __init__(self, total: int, warmup: int = 0, power: float = POLY_POWER):
        self.total, self.warmup, self.power = int(total), int(warmup), float(power)

    def effective_warmup(self) -> int:
        return max(0, min(self.warmup, self.total - 1))  # at least one epoch of decay

    def __call__(self, epoch: int) -> float:
        w = self.effective_warmup()
        if epoch < w:
            return (epoch + 1) / (w + 1)
        span = max(self.total - w, 1)
        return max(0.0, 1.0 - (epoch - w) / span) ** self.power


def make_scheduler(optimizer: torch.optim.Optimizer, total: int, warmup: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, PolySchedule(total, warmup))


def set_total(scheduler: torch.optim.lr_scheduler.LambdaLR, total: int) -> None:
    """Move the end of the schedule to ``total`` epochs; the next ``step()`` uses it."""
    for fn in scheduler.lr_lambdas:
        fn.total = int(total)


def move_schedule_end(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, done: int,
                      total: int) -> float:
    """A resumed run whose epochs changed: the schedule now ends at ``total``; the next epoch (``done``, 0-based)
    trains at ``initial_lr * factor(done)`` at once. Returns that learning rate."""
    set_total(scheduler, total)
    for group, fn in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["lr"] = group["initial_lr"] * fn(done)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    return optimizer.param_groups[0]["lr"]


def load_scheduler_state(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict) -> None:
    """Restore a scheduler; a checkpoint of the earlier ``PolynomialLR`` (``total_iters``) resumes the same decay."""
    if "lr_lambdas" not in state and "total_iters" in state:
        set_total(scheduler, int(state["total_iters"]))
        scheduler.last_epoch = int(state.get("last_epoch", 0))
        scheduler.base_lrs = list(state.get("base_lrs", scheduler.base_lrs))
        scheduler._last_lr = list(state.get("_last_lr", scheduler.get_last_lr()))
        return
    scheduler.load_state_dict(state)


def validations_between(first: int, last: int, val_every: int) -> int:
    """Periodic validations after epochs ``first..last`` (1-based, inclusive)."""
    if last < first:
        return 0
    return last // val_every - (first - 1) // val_every


def fit_total_epochs(*, current: int, limit: int | None, budget: float, elapsed: float, epoch_seconds: float,
                     val_seconds: float, val_every: int) -> int:
    """The total epochs (>= ``current``, <= ``limit``) that fit ``budget`` seconds.

    ``current``: the 1-based epoch just trained (its validation, if periodic, is still to come); ``elapsed``: the
    seconds spent so far on training and validations (this epoch's training included); ``epoch_seconds``: mean
    training seconds per epoch; ``val_seconds``: mean seconds per validation (0 before the first). Validations
    after epochs ``current..total-1`` count against the budget; the closing one after ``total`` does not.
    """
    left = budget - elapsed
    total = current
    cap = limit if limit is not None else current + 1_000_000
    per_epoch = max(epoch_seconds, 1e-6)
    # the number of extra epochs is at most left / per_epoch: search down from there (validations only add cost)
    guess = int(min(cap, current + max(0.0, left) // per_epoch))
    for t in range(guess, current, -1):
        cost = (t - current) * per_epoch + validations_between(current, t - 1, val_every) * val_seconds
        if cost <= left:
            total = t
            break
    return total


class BudgetClock:
    """Applies :func:`fit_total_epochs` after each epoch from wall-clock measurements of this session.

    The time per epoch is everything but validation (iterations, checkpoints, the progress plot, hooks), measured
    as the wall time since the loop started minus the validations, divided by the epochs trained in this session;
    ``spent_before`` is the time a resumed run already spent (the ``epoch_time`` sum of its kept log records).
    """

    def __init__(self, budget: float, limit: int | None, val_every: int, start_epoch: int = 0,
                 spent_before: float = 0.0):
        self.budget, self.limit, self.val_every = float(budget), limit, int(val_every)
        self.start_epoch, self.spent_before = int(start_epoch), float(spent_before)
        self.val_times: list[float] = []

    def mean_validation(self) -> float:
        return sum(self.val_times) / len(self.val_times) if self.val_times else 0.0

    def epoch_seconds(self, current: int, session_seconds: float) -> float:
        return max(session_seconds - sum(self.val_times), 0.0) / max(current - self.start_epoch, 1)

    def fit(self, current: int, session_seconds: float) -> int:
        """The fitted total epochs after training epoch ``current`` (1-based), ``session_seconds`` after the start."""
        return fit_total_epochs(current=current, limit=self.limit, budget=self.budget,
                                elapsed=self.spent_before + session_seconds,
                                epoch_seconds=self.epoch_seconds(current, session_seconds),
                                val_seconds=self.mean_validation(), val_every=self.val_every)

    def add_validation(self, seconds: float) -> None:
        self.val_times.append(float(seconds))

    def sparser_val_every(self, current: int, session_seconds: float, share: float = VAL_SHARE) -> int:
        """A validation interval (>= the current one) at which periodic validations take at most ``share`` of the
        training time (used when the user did not set ``--val-every``)."""
        per_epoch = self.epoch_seconds(current, session_seconds)
        if not self.val_times or per_epoch <= 0:
            return self.val_every
        return max(self.val_every, math.ceil(self.mean_validation() / (share * per_epoch)))
