"""Time-budgeted training: the duration parser, the learning-rate schedule and the rule that fits the epochs.

- ``parse_duration("1h30m") == 5400.0``: ``90s``, ``10m``, ``1h``, ``1h30m``, ``2.5m``; anything else is a
  :class:`~salseg.errors.ConfigError` naming the text and the accepted form.
- :class:`PolySchedule` is the learning-rate factor per epoch: an optional linear warm-up over ``warmup`` epochs,
  then nnU-Net's poly decay ``(1 - t / T) ** 0.9`` that ends at epoch ``total`` (the last trained epoch has a small
  positive rate, never 0). It is a callable object, so ``LambdaLR``'s state dict saves and restores ``total``:
  a budget that moves the last epoch moves the end of the schedule with it, also across ``--continue``.
  Without warm-up it equals ``torch.optim.lr_scheduler.PolynomialLR(total_iters=total, power=0.9)``.
- :func:`fit_total_epochs` is the epoch-level rule (after each epoch, the epochs whose training and periodic
  validations fit what is left); the trainer applies the budget per iteration instead (:class:`IterationBudget`:
  :func:`fit_total_iterations` before every iteration, with the closing validation's estimate,
  :func:`closing_plan`, set aside, and the learning rate of :func:`budget_lr_factor`), so an epoch may end early,
  the last iteration trains at lr ~0 and a run ends within the budget plus the error of the announced estimate.
  Unless ``--val-every`` is given, a budgeted run validates less often once the first validation is measured, so
  that periodic validations take at most ``VAL_SHARE`` of the training time.
"""

from __future__ import annotations

import math
import re
from collections import deque

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


# ------------------------------------------------------------------------------------ the budget per iteration
WARMUP_SHARE = 0.1    # under a budget, warm-up takes at most this share of the iterations that fit
CLOSING_SHARE = 0.25  # the closing validation may take at most this share of the budget (fewer mirror axes else)
EXPORT_OVERHEAD = 1.25  # the closing validation's export and scoring on top of its sliding windows
CLOSING_FIXED = 2.0     # seconds of the closing validation besides its windows (+ 1 s per case: export, scoring)
RECENT = 10             # iterations the current iteration time is measured over


def fit_total_iterations(*, done: int, limit: int | None, left: float, iter_seconds: float, val_seconds: float,
                         val_every: int, iters_per_epoch: int) -> int:
    """The total training iterations (>= ``done``, <= ``limit``) whose remaining iterations and periodic
    validations fit ``left`` seconds (what is left of the budget after the closing validation's estimate)."""
    per = max(float(iter_seconds), 1e-9)

    def cost(total: int) -> float:  # the periodic validations after epochs done..last-1 (the closing validation
        last_epoch = -(-total // iters_per_epoch)  # replaces an in-training one after the last epoch)
        vals = validations_between(done // iters_per_epoch + 1, last_epoch - 1, val_every) if val_seconds else 0
        return (total - done) * per + vals * val_seconds

    lo, hi = done, done + int(max(0.0, left) // per)  # the cost grows with the total: the largest that fits
    if limit is not None:
        hi = max(lo, min(hi, limit))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= left else (lo, mid - 1)
    total = lo
    return min(total, limit) if limit is not None else total


def budget_lr_factor(i: int, total: int, warmup_epochs: int, iters_per_epoch: int) -> float:
    """The learning-rate factor of iteration ``i`` (0-based, over the whole run) of ``total`` fitted iterations:
    a linear warm-up over at most ``WARMUP_SHARE`` of them (it shrinks when few epochs fit), then the poly decay
    that reaches ~0 at the last fitted iteration."""
    w = min(int(warmup_epochs) * int(iters_per_epoch), int(WARMUP_SHARE * total))
    if i < w:
        return (i + 1) / (w + 1)
    return max(0.0, 1.0 - (i - w) / max(total - w, 1)) ** POLY_POWER


def closing_plan(windows: int, axes: tuple, window_seconds: float, budget: float, cases: int = 1,
                 share: float = CLOSING_SHARE) -> tuple[tuple, float]:
    """(mirror axes, estimated seconds) of the closing validation: ``windows`` sliding windows without mirroring,
    each mirror axis doubling them; as many axes as keep it within ``share`` of the budget (none if even the plain
    windows do not fit: it runs once, unmirrored, and its estimate is counted)."""
    def cost(n: int) -> float:
        return windows * 2 ** n * window_seconds * EXPORT_OVERHEAD + CLOSING_FIXED + 1.0 * cases

    for n in range(len(axes), -1, -1):
        if cost(n) <= share * budget or n == 0:
            return tuple(axes[:n]), cost(n)
    return (), cost(0)


def count_windows(shapes, patch_size) -> int:
    """Sliding windows (step 0.5, no mirroring) over cases of preprocessed ``shapes`` (Z, Y, X): a 2D patch slides
    over every slice, a 3D patch over the volume (sizes below the patch are padded to it)."""
    from salseg.infer.sliding_window import compute_steps

    patch = [int(p) for p in patch_size]
    total = 0
    for shape in shapes:
        shape = [int(s) for s in shape]
        planes = shape[0] if len(patch) == 2 else 1
        size = [max(s, p) for s, p in zip(shape[-len(patch):], patch)]
        total += planes * math.prod(len(s) for s in compute_steps(size, patch, 0.5))
    return total


class IterationBudget:
    """A time budget applied between iterations: before each, the iterations that still fit (:func:`fit_total_
    iterations`, after the closing validation's estimate is set aside) and the learning-rate factor of this one
    (:func:`budget_lr_factor`); ``None`` when the budget is spent, so an epoch may end early and the last
    iteration trains at a learning rate of ~0. The closing validation's cost (:func:`closing_plan`) is estimated
    from the time of one window: measured by the periodic validations when there are any, else timed at set-up
    (:meth:`timed_window`: a validation case's slices, one window each), else a third of a training sample's
    forward and backward pass; scaled by how the iteration time (of the last ``RECENT`` iterations) changed since
    then, as a machine's load changes during a run. Under a budget the closing validation replaces the in-training
    one after the last epoch (it validates the same cases), so only the periodic validations before it are counted
    besides it."""

    def __init__(self, clock: BudgetClock, *, iters_per_epoch: int, warmup_epochs: int, batch_size: int,
                 windows: int, mirror_axes: tuple, cases: int):
        self.clock, self.ipe, self.warmup = clock, int(iters_per_epoch), int(warmup_epochs)
        self.batch, self.windows, self.all_axes, self.cases = max(int(batch_size), 1), int(windows), \
            tuple(mirror_axes), int(cases)
        self.limit = clock.limit * self.ipe if clock.limit is not None else None
        self.total: int | None = None
        self.window_seconds: float | None = None   # measured by a periodic validation
        self.window_timed: float | None = None     # timed at set-up (a validation case's slices)
        self.axes, self.closing_seconds = tuple(mirror_axes), 0.0
        self.iter_seconds = 0.0
        self.first_batch_seconds = 0.0   # session seconds when the session's first batch arrived (loader start-up)
        self.marks: deque = deque(maxlen=RECENT + 1)  # (session iterations, training seconds) of the last steps
        self.window_ref: float | None = None  # the iteration time when the window time was measured

    def timed_window(self, seconds: float) -> None:
        """One window's seconds, timed at set-up; its reference rate is that of the first iterations."""
        self.window_timed, self.window_ref = float(seconds), None

    def measured_validation(self, seconds: float) -> None:
        if self.windows:
            self.window_seconds = float(seconds) / self.windows
            self.window_ref = self.iter_seconds or None  # the iteration time just before this validation

    def current_window(self, per_iter: float, session_iters: int) -> float:
        """Seconds per window now: the measured (or timed) window scaled by how the iteration time changed since
        it was measured (a machine that became busier slows both alike); else a third of a training sample."""
        base = next((w for w in (self.window_seconds, self.window_timed) if w is not None), None)
        if base is None:
            return per_iter / (3 * self.batch)
        if self.window_ref is None and session_iters > RECENT:
            self.window_ref = per_iter  # the first RECENT iterations' rate: the machine as the set-up timing saw it
        return base * (per_iter / self.window_ref if self.window_ref else 1.0)

    def step(self, i: int, session_iters: int, session_seconds: float) -> float | None:
        """The learning-rate factor of iteration ``i`` (0-based over the run), ``session_iters`` iterations and
        ``session_seconds`` after this session's start; None: stop before it."""
        if session_iters == 0:  # nothing measured yet: the first iteration always trains. The time until its batch
            # arrived (loader workers starting, on a loaded machine tens of seconds) counts as spent but is no
            # iteration rate: taken as one, the closing validation's estimate alone could fill the budget
            self.first_batch_seconds = session_seconds
            return budget_lr_factor(i, self.limit or i + 1_000_000, self.warmup, self.ipe)
        train_seconds = max(session_seconds - self.first_batch_seconds - sum(self.clock.val_times), 0.0)
        self.marks.append((session_iters, train_seconds))
        n0, s0 = self.marks[0]  # the rate of the last RECENT iterations: a machine's load changes during a run
        per_iter = self.iter_seconds = ((train_seconds - s0) / (session_iters - n0) if session_iters > n0
                                        else train_seconds / session_iters)
        window = self.current_window(per_iter, session_iters)
        # the periodic validations (measured, else estimated unmirrored)
        val_seconds = self.clock.mean_validation() or self.windows * window
        self.axes, self.closing_seconds = closing_plan(self.windows, self.all_axes, window, self.clock.budget,
                                                       self.cases) if self.windows else ((), 0.0)
        left = self.clock.budget - self.clock.spent_before - session_seconds - self.closing_seconds
        self.total = fit_total_iterations(done=i, limit=self.limit, left=left, iter_seconds=per_iter,
                                          val_seconds=val_seconds, val_every=self.clock.val_every,
                                          iters_per_epoch=self.ipe)
        if i >= self.total:
            return None
        return budget_lr_factor(i, self.total, self.warmup, self.ipe)

    def epochs(self, epoch: int, stopped: bool) -> int:
        """The run's epochs after 1-based epoch ``epoch``: itself when it stopped, else the epochs the fitted
        iterations reach."""
        if stopped or self.total is None:
            return epoch if stopped else max(epoch, self.clock.limit or epoch)
        return max(epoch, -(-self.total // self.ipe))


def case_shapes(folder, case_ids) -> list[list[int]]:
    """The preprocessed (Z, Y, X) shapes of cases, from each case's JSON."""
    from pathlib import Path

    from salseg.fileio import read_json

    shapes = []
    for cid in case_ids:
        props = read_json(Path(folder) / f"{cid}.json")
        shapes.append(props.get("shape_after_resample") or props.get("shape_after_crop") or [1, 1, 1])
    return [[int(v) for v in s] for s in shapes]


def closing_windows(folder, case_ids, patch_size) -> tuple[int, int]:
    """(sliding windows of the closing validation's cases, their median number of slices): the windows are
    counted from the preprocessed shapes; the slices size the set-up timing of a window (a 2D or slice model
    predicts a volume's slices together, so one window's time depends on them)."""
    shapes = case_shapes(folder, case_ids)
    planes = sorted(s[0] for s in shapes)[len(shapes) // 2] if shapes else 1
    return count_windows(shapes, patch_size), planes


def closing_record(budget: IterationBudget) -> dict:
    """config.json's ``closing_validation``: what the budget chose and estimated."""
    return {"mirror_axes": list(budget.axes), "mirror_axes_full": list(budget.all_axes), "windows": budget.windows,
            "cases": budget.cases, "estimated_seconds": round(budget.closing_seconds, 1)}


def describe_closing(budget: IterationBudget) -> str:
    """The closing validation's announcement (the estimate is counted inside the budget)."""
    if not budget.windows:
        return "no closing validation (no validation cases)"
    axes = ("mirroring on axes " + " ".join(map(str, budget.axes))) if budget.axes else "no mirroring"
    fewer = " (fewer than every axis to fit the budget)" if budget.axes != budget.all_axes and budget.all_axes else ""
    return (f"closing validation of {budget.cases} case(s), {budget.windows} windows x {2 ** len(budget.axes)}, "
            f"{axes}{fewer}: estimated {budget.closing_seconds:.0f} s, counted inside the budget")
