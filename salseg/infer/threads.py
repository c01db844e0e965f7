"""How many torch threads a CPU prediction uses: measured on the case's own network calls.

torch's default is one thread per core. On a machine whose cores are also busy with other jobs that can be the slow
choice: every operator ends in a barrier that waits for all its threads, and a thread the scheduler has parked
stalls the others for a time slice, so small operators (2D tiles) lose and large ones (3D tiles) still win.
Measured on the 2-core project machine at load average 5-7 (docs/performance.md): the 2d knee unet (112 x 256
tiles) 1.69 s per tile with 2 threads against 0.20 s with 1 (batch 16: 0.33 against 0.26 s per tile), the 3d one
(128 x 96 x 192) 13.4-15.7 s with 2 threads against 20.0-20.5 s with 1.

So :class:`ThreadTuner` times the network's first calls and keeps the faster count (per tile, so a last, smaller
batch does not bias it) for the rest of the prediction. A batch of tiles (2D slices) is split for the trial at no
extra work: its first tile runs with torch's count as the warm-up, then the rest in one equal part per candidate
(torch's count, 1), one call. Single tiles (3D) take one warm-up call with torch's count and then one call per
candidate. The network's outputs do not depend on how a batch is split (tiles are independent; the tests check
bit-for-bit equality). ``SALSEG_NUM_THREADS`` fixes the count; so do ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS`` (torch's count is then the user's choice); torch's count is never exceeded (a program that
lowered it with ``torch.set_num_threads`` keeps its ceiling). Training's rule (salseg.parallel.threads_for_busy_machine)
takes the cores the 1-minute load average leaves free; a prediction measures instead, because the best count
depends on the tile size (above) and not only on the load.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Callable

import torch

from salseg.errors import ConfigError
from salseg.parallel import NUM_THREADS_ENV as ENV, THREAD_ENV, torch_threads  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


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


class ThreadTuner:
    """Chooses torch's thread count for a CPU prediction from the timings of its first network calls.

    ``wrap(fn)`` returns ``fn`` run under the current choice; calls before the choice is made are the trials
    (see the module's docstring). ``chosen`` is the count once decided (at once when there is one candidate). One
    tuner serves every case and fold of a predictor.
    """

    def __init__(self, candidates=None):
        if candidates is None:
            fixed = fixed_threads()
            ceiling = torch.get_num_threads()
            candidates = [fixed] if fixed else ([ceiling, 1] if ceiling > 1 else [1])
        self.candidates = list(dict.fromkeys(int(c) for c in candidates))
        self.timings: dict[int, float] = {}
        self.warm = len(self.candidates) == 1
        self.chosen: int | None = self.candidates[0] if self.warm else None

    def _next(self) -> int:
        if self.chosen is not None:
            return self.chosen
        if not self.warm:
            return self.candidates[0]
        return next(c for c in self.candidates[::-1] if c not in self.timings)

    def _record(self, n: int, seconds_per_item: float) -> None:
        if self.chosen is not None:
            return
        if not self.warm:
            self.warm = True
            return
        self.timings[n] = seconds_per_item
        if len(self.timings) == len(self.candidates):
            self.chosen = min(self.timings, key=self.timings.get)
            log.debug("CPU prediction with %d thread(s) (s per tile: %s)", self.chosen,
                     ", ".join(f"{k} threads {v:.3f}" for k, v in self.timings.items()))

    def _timed(self, fn, x: torch.Tensor, n: int) -> torch.Tensor:
        with torch_threads(n):
            t0 = time.perf_counter()
            y = fn(x)
            elapsed = time.perf_counter() - t0
        self._record(n, elapsed / max(1, int(x.shape[0])))
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
