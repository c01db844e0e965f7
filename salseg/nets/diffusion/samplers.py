"""Reverse-process samplers shared by MedSegDiff and LDSeg (written once).

``denoise(x_t, t) -> eps_hat`` is any callable predicting the noise (``t`` a long tensor, one step per sample).

- DDIM (Song et al. 2021): S evenly spaced steps over [0, T-1], ``eta`` = 0 (deterministic) by default. The denoiser
  is called exactly S times.
- DDPM ancestral sampling (Ho et al. 2020): every step T-1 .. 0 with the posterior variance
  beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t). It is the same update as DDIM with eta = 1 on the full
  step sequence; with ``steps`` < T it is the respaced DDPM of Nichol & Dhariwal 2021 (same formula on the
  subsequence), so one loop serves both.

Everything runs under ``torch.no_grad()``; only the current x_t lives between steps (no graph, no cache), so memory
does not grow with the number of steps or samples. Noise is drawn for the whole batch at once: every sample of a
batch gets its own noise.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from salseg.errors import ConfigError
from salseg.nets.diffusion.schedules import NoiseSchedule

SAMPLERS = ("ddim", "ddpm")


def randn(shape, *, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device (so a CPU generator also seeds CUDA runs)."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """S evenly spaced timesteps from T-1 down to 0 (distinct, descending)."""
    steps = int(steps)
    if not 1 <= steps <= timesteps:
        raise ConfigError(f"sampling steps must be between 1 and {timesteps}, got {steps}")
    if steps == 1:
        return [timesteps - 1]
    seq = np.round(np.linspace(0, timesteps - 1, steps)).astype(int)
    return sorted({int(v) for v in seq}, reverse=True)


@torch.no_grad()
def reverse_loop(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                 schedule: NoiseSchedule, timesteps: list[int], *, eta: float = 0.0,
                 generator: torch.Generator | None = None, clip: float | None = None) -> torch.Tensor:
    """Run the generalised (DDIM) reverse update from x = x_{timesteps[0]} down to x_0 and return x_0.

    ``clip``: clamp the x0 estimate to [-clip, clip] at every step (masks in [-1, 1]); eps is then recomputed from
    the clamped estimate so the update stays consistent.
    """
    abar = schedule.alphas_cumprod_f64
    batch = x.shape[0]
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        a_t = float(abar[t])
        a_prev = float(abar[t_prev]) if t_prev >= 0 else 1.0
        eps = denoise(x, torch.full((batch,), t, device=x.device, dtype=torch.long)).to(x.dtype)
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        if t_prev < 0:
            x = x0
            break
        sigma = eta * math.sqrt(max((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev), 0.0))
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        del eps, x0
    return x


@torch.no_grad()
def sample(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape, schedule: NoiseSchedule, *,
           sampler: str = "ddim", steps: int | None = None, eta: float | None = None,
           generator: torch.Generator | None = None, device=None, dtype=torch.float32,
           clip: float | None = None) -> torch.Tensor:
    """Draw x_T ~ N(0, I) of ``shape`` and denoise it.

    ``sampler="ddim"``: ``steps`` evenly spaced steps (required), ``eta`` default 0.
    ``sampler="ddpm"``: ancestral sampling, ``steps`` default T (all steps; fewer = respaced DDPM), eta fixed to 1.
    """
    if sampler == "ddim":
        if steps is None:
            raise ConfigError("DDIM sampling needs a number of steps")
        eta = 0.0 if eta is None else float(eta)
    elif sampler == "ddpm":
        steps = schedule.timesteps if steps is None else steps
        eta = 1.0
    else:
        raise ConfigError(f"unknown sampler {sampler!r}; choose {' or '.join(SAMPLERS)}")
    seq = ddim_timesteps(schedule.timesteps, steps)
    x = randn(shape, generator=generator, device=device, dtype=dtype)
    return reverse_loop(denoise, x, schedule, seq, eta=eta, generator=generator, clip=clip)


class DiffusionSegmenter(torch.nn.Module):
    """What the trainer and the predictor see of a diffusion segmenter (the small shared interface).

    Subclasses implement ``training_loss(image, target)`` and ``sample_once(image, steps, sampler, generator)``
    (one sample's class probabilities, (B, num_classes, *S)). This class adds the ensemble and ``forward``:
    ``model(image)`` returns PROBABILITIES (``outputs_probabilities = True``), equal to ``sample(image)`` with the
    default settings, so a generic sliding-window predictor can treat the model like any segmenter.
    """

    is_diffusion = True
    outputs_probabilities = True
    default_steps = 50
    validation_steps = 5

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = int(num_classes)

    def sample_once(self, image, steps, sampler, generator):  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, image: torch.Tensor, *, steps: int | None = None, sampler: str = "ddim",
               generator: torch.Generator | None = None, ensemble: int = 1, return_samples: bool = False):
        """Mean over ``ensemble`` samples of the per-sample class probabilities, (B, num_classes, *S).

        ``steps`` defaults to ``default_steps`` for DDIM and to T for DDPM. With ``return_samples`` also returns the
        stacked per-sample probabilities (N, B, num_classes, *S) (for a per-voxel variance / uncertainty map);
        otherwise only a running sum is kept, so memory does not depend on N.
        """
        if int(ensemble) < 1:
            raise ConfigError(f"ensemble must be >= 1, got {ensemble!r}")
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {sampler!r}; choose {' or '.join(SAMPLERS)}")
        if steps is None and sampler == "ddim":
            steps = self.default_steps
        total, samples = None, []
        for _ in range(int(ensemble)):
            probs = self.sample_once(image, steps, sampler, generator)
            total = probs.clone() if total is None else total.add_(probs)
            if return_samples:
                samples.append(probs)
            del probs
        mean = total.div_(int(ensemble))
        if return_samples:
            return mean, torch.stack(samples)
        return mean

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities from one default DDIM sample (NOT logits; see ``outputs_probabilities``)."""
        return self.sample(image)
