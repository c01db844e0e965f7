"""How a CPU prediction runs its network calls: tiles per call, concurrent calls, torch threads; measured on the
case's own calls.

torch's default is one thread per core, one call at a time. Two things make that slow on a CPU: a large batch of
tiles runs out of the caches (the 2d knee unet: 32 tiles of 112 x 256 in 6.7 s as one batch, 4.3 s in batches of
4, on the 2-core project machine), and every operator ends in a barrier that waits for all its threads, so
operators too small to split evenly leave cores idle, worse when the machine is busy and the scheduler parks a
thread (load 5-7: one 2d tile 1.69 s with 2 threads, 0.20 s with 1). Independent calls on single-threaded
streams have no barrier between them: the same 32 tiles on two streams of 1 thread took 3.6 s (docs/performance.md).

So a call's tiles are split into chunks of about :data:`CHUNK_VOXELS` voxels (:func:`run_plan`), and a
:class:`Plan` says how many chunks run at once (``streams``, worker threads) with how many torch threads each.
:class:`ThreadTuner` times the network's first calls under each candidate plan (torch's count in one stream; as
many single-threaded streams as threads) and keeps the faster per tile (so a last, smaller batch does not bias it)
for the rest of the prediction. A batch of tiles is split for the trial at no extra work: its first tile runs under
the first plan as the warm-up, then the rest in one equal part per candidate. Single tiles take one warm-up call and
then one call per candidate (a lone chunk runs with all of its plan's threads). The network's outputs do not depend
on the plan beyond float rounding (tiles are independent; the tests compare). ``SALSEG_NUM_THREADS`` fixes the
count (one stream); so do ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (torch's count is then the user's choice);
torch's count is never exceeded (a program that lowered it with ``torch.set_num_threads`` keeps its ceiling).
Training's rule (salseg.parallel.threads_for_busy_machine) takes the cores the 1-minute load average leaves free;
a prediction measures instead, because the best plan depends on the tile size and not only on the load.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from salseg.errors import ConfigError
from salseg.parallel import NUM_THREADS_ENV as ENV, THREAD_ENV, torch_threads  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

# tiles per CPU network call: about four 112 x 256 2D tiles (docs/performance.md: the 2d knee unet ran 32 tiles
# in 6.7 s as one batch, 4.3 s in batches of 4, 3.6 s in batches of 4 on two single-threaded streams)
CHUNK_VOXELS = 4 * 112 * 256


def fixed_threads() -> int | None:
    """The thread count the user fixed (``SALSEG_NUM_THREADS``, or torch's under ``OMP/MKL_NUM_THREADS``)."""
    value = os.environ.get(ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{ENV}={value!r}: expected a whole number of threads >= 1")
        return int(value)
    if any(os.environ.get(k) for k in THREAD_ENV):
        return torch.get_num_threads()
    return None


@dataclass(frozen=True)
class Plan:
    """How a CPU prediction runs its network calls: ``streams`` concurrent calls (worker threads), each with
    ``threads`` torch threads, over chunks of :func:`chunk_size` tiles."""

    streams: int = 1
    threads: int = 1

    @property
    def cores(self) -> int:
        """Threads in all: what the rest of the prediction (export) uses under this plan."""
        return self.streams * self.threads

    def __str__(self) -> str:
        return f"{self.streams} stream(s) x {self.threads} thread(s)"


def chunk_size(x: torch.Tensor) -> int:
    """Tiles per network call on the CPU: about :data:`CHUNK_VOXELS` voxels, at least one tile."""
    per_tile = max(1, int(np.prod(x.shape[2:])))
    return max(1, CHUNK_VOXELS // per_tile)


def run_plan(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, plan: Plan) -> torch.Tensor:
    """``fn`` over the tiles ``x`` in chunks of :func:`chunk_size`, ``plan.streams`` chunks at a time (each worker
    thread in its own inference mode, torch at ``plan.threads`` threads; one chunk alone runs with all the plan's
    threads). The outputs are concatenated in order: tiles are independent, so they do not depend on the chunks."""
    parts = list(x.split(chunk_size(x))) if x.shape[0] else [x]
    if plan.streams <= 1 or len(parts) == 1:
        with torch_threads(plan.threads if len(parts) > 1 else plan.cores):
            return torch.cat([fn(p) for p in parts]) if len(parts) > 1 else fn(parts[0])

    def work(part):
        with torch.inference_mode():
            return fn(part)

    with torch_threads(plan.threads):
        pool = ThreadPoolExecutor(min(plan.streams, len(parts)))
        try:
            return torch.cat(list(pool.map(work, parts)))
        finally:  # after an error or Ctrl-C the chunks not yet started are dropped, not run to the end
            pool.shutdown(wait=True, cancel_futures=True)


def candidate_plans() -> list[Plan]:
    """The plans a prediction times: torch's count in one stream, and one single-threaded stream per thread (a
    count the user fixed: that count in one stream)."""
    fixed = fixed_threads()
    if fixed:
        return [Plan(1, fixed)]
    ceiling = torch.get_num_threads()
    return [Plan(1, ceiling), Plan(ceiling, 1)] if ceiling > 1 else [Plan(1, 1)]


class ThreadTuner:
    """Chooses how a CPU prediction runs its network calls (a :class:`Plan`) from the timings of its first calls.

    ``wrap(fn)`` returns ``fn`` run under the current choice; calls before the choice is made are the trials
    (see the module's docstring). ``chosen`` is the plan once decided (at once when there is one candidate). One
    tuner serves every case and fold of a predictor.
    """

    def __init__(self, candidates: list[Plan] | None = None):
        self.candidates = list(dict.fromkeys(candidate_plans() if candidates is None else candidates))
        self.timings: dict[Plan, float] = {}
        self.warm = len(self.candidates) == 1
        self.chosen: Plan | None = self.candidates[0] if self.warm else None

    @property
    def export_threads(self) -> int | None:
        """torch's thread count for the rest of the prediction (export): the chosen plan's cores."""
        return self.chosen.cores if self.chosen is not None else None

    def _next(self) -> Plan:
        if self.chosen is not None:
            return self.chosen
        if not self.warm:
            return self.candidates[0]
        return next(c for c in self.candidates[::-1] if c not in self.timings)

    def _record(self, plan: Plan, seconds_per_item: float) -> None:
        if self.chosen is not None:
            return
        if not self.warm:
            self.warm = True
            return
        self.timings[plan] = seconds_per_item
        if len(self.timings) == len(self.candidates):
            self.chosen = min(self.timings, key=self.timings.get)
            log.debug("CPU prediction with %s (s per tile: %s)", self.chosen,
                      ", ".join(f"{k}: {v:.3f}" for k, v in self.timings.items()))

    def _timed(self, fn, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        t0 = time.perf_counter()
        y = run_plan(fn, x, plan)
        self._record(plan, (time.perf_counter() - t0) / max(1, int(x.shape[0])))
        return y

    def _split_trial(self, fn, x: torch.Tensor) -> torch.Tensor:
        """One batch: the first tile as the warm-up, the rest in one equal part per candidate."""
        k = len(self.candidates)
        out = [self._timed(fn, x[:1], self.candidates[0])]  # the warm-up (not recorded)
        bounds = [1 + round(i * (x.shape[0] - 1) / k) for i in range(k + 1)]
        for c, a, b in zip(self.candidates[::-1], bounds, bounds[1:]):
            out.append(self._timed(fn, x[a:b], c))
        return torch.cat(out)

    def wrap(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def call(x: torch.Tensor) -> torch.Tensor:
            if self.chosen is None and not self.warm and x.shape[0] > len(self.candidates):
                return self._split_trial(fn, x)
            return self._timed(fn, x, self._next())

        return call
