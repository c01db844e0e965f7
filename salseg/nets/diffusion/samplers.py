"""Reverse-process samplers shared by MedSegDiff and LDSeg (written once).

``denoise(x_t, t) -> eps_hat`` is any callable predicting the noise (``t`` a long tensor, one step per sample).

- DDIM (Song et al. 2021): S evenly spaced steps over [0, T-1], ``eta`` = 0 (deterministic) by default. The denoiser
  is called exactly S times.
- DDPM ancestral sampling (Ho et al. 2020): every step T-1 .. 0 with the posterior variance
  beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t). It is the same update as DDIM with eta = 1 on the full
  step sequence; with ``steps`` < T it is the respaced DDPM of Nichol & Dhariwal 2021 (same formula on the
  subsequence), so one loop serves both.
- DPM-Solver++ (Lu et al. 2022), 2nd-order multistep in data (x0) prediction: ``steps`` + 1 time points evenly
  spaced from T-1 down to 0, one denoiser call per step (``steps`` calls), first step first order; the x0
  estimates pass through ``correct_x0`` (the official MedSegDiff uses dynamic thresholding, ratio 0.995).

Everything runs under ``torch.no_grad()``; only the current x_t lives between steps (no graph, no cache), so memory
does not grow with the number of steps or samples. Noise is drawn for the whole batch at once: every sample of a
batch gets its own noise.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from salseg.errors import ConfigError
from salseg.nets.capabilities import Capabilities
from salseg.nets.diffusion.blocks import one_hot
from salseg.nets.diffusion.fusion import FUSIONS, fg_to_probs, fuse
from salseg.nets.diffusion.schedules import NoiseSchedule

SAMPLERS = ("ddim", "ddpm", "dpm-solver")


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


def dpm_timesteps(timesteps: int, steps: int) -> list[int]:
    """``steps`` + 1 distinct time points from T-1 down to 0 (DPM-Solver's time-uniform grid on step indices)."""
    steps = int(steps)
    if not 1 <= steps <= timesteps - 1:
        raise ConfigError(f"DPM-Solver steps must be between 1 and {timesteps - 1}, got {steps}")
    seq = np.round(np.linspace(timesteps - 1, 0, steps + 1)).astype(int)
    return [int(v) for v in seq]


def dynamic_threshold(x0: torch.Tensor, ratio: float = 0.995, max_value: float = 1.0) -> torch.Tensor:
    """Imagen's dynamic thresholding (as DPM-Solver's ``dynamic_thresholding_fn``): per sample s = max(quantile of
    |x0| at ``ratio``, max_value); x0 -> clamp(x0, -s, s) / s."""
    flat = x0.abs().reshape(x0.shape[0], -1).float()
    q = torch.quantile(flat, ratio, dim=1).clamp_min(max_value).to(x0.dtype)
    q = q.reshape(-1, *([1] * (x0.ndim - 1)))
    return torch.maximum(torch.minimum(x0, q), -q) / q


@torch.no_grad()
def dpm_solver_pp(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                  schedule: NoiseSchedule, steps: int, *,
                  correct_x0: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) from x = x_{T-1} to x at step 0 (which is returned)."""
    abar = schedule.alphas_cumprod_f64
    times = dpm_timesteps(schedule.timesteps, steps)
    lam = [0.5 * math.log(abar[t] / (1 - abar[t])) for t in times]
    batch, x0_prev, h_prev = x.shape[0], None, None
    for i in range(1, len(times)):
        s, t = times[i - 1], times[i]
        eps = denoise(x, torch.full((batch,), s, device=x.device, dtype=torch.long)).to(x.dtype)
        x0 = (x - math.sqrt(1 - abar[s]) * eps) / math.sqrt(abar[s])
        if correct_x0 is not None:
            x0 = correct_x0(x0)
        h = lam[i] - lam[i - 1]
        d = x0 if x0_prev is None else (1 + 1 / (2 * h_prev / h)) * x0 - 1 / (2 * h_prev / h) * x0_prev
        x = math.sqrt((1 - abar[t]) / (1 - abar[s])) * x - math.sqrt(abar[t]) * math.expm1(-h) * d
        x0_prev, h_prev = x0, h
    return x


@torch.no_grad()
def sample(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape, schedule: NoiseSchedule, *,
           sampler: str = "ddim", steps: int | None = None, eta: float | None = None,
           generator: torch.Generator | None = None, device=None, dtype=torch.float32,
           clip: float | None = None) -> torch.Tensor:
    """Draw x_T ~ N(0, I) of ``shape`` and denoise it.

    ``sampler="ddim"``: ``steps`` evenly spaced steps (required), ``eta`` default 0.
    ``sampler="ddpm"``: ancestral sampling, ``steps`` default T (all steps; fewer = respaced DDPM), eta fixed to 1.
    ``sampler="dpm-solver"``: DPM-Solver++(2M), ``steps`` required; x0 estimates clamped to ``clip`` if given.
    """
    if sampler == "dpm-solver":
        if steps is None:
            raise ConfigError("DPM-Solver sampling needs a number of steps")
        x = randn(shape, generator=generator, device=device, dtype=dtype)
        fix = (lambda x0: x0.clamp(-clip, clip)) if clip is not None else None
        return dpm_solver_pp(denoise, x, schedule, steps, correct_x0=fix)
    if sampler == "ddim":
        if steps is None:
            raise ConfigError("DDIM sampling needs a number of steps")
        eta = 0.0 if eta is None else float(eta)
    elif sampler == "ddpm":
        steps = schedule.timesteps if steps is None else steps
        eta = 1.0
    else:
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
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

    outputs_probabilities = True
    default_sampler = "ddim"
    default_steps = 50
    validation_steps = 5

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = int(num_classes)

    @property
    def capabilities(self) -> Capabilities:
        """A diffusion model, validated in training with ``validation_steps`` sampling steps; ``ema`` where the
        subclass keeps an EMA copy (``uses_ema``)."""
        return Capabilities(diffusion=True, validation_steps=self.validation_steps, ema=self.uses_ema)

    @property
    def uses_ema(self) -> bool:
        """Whether ``ema_update()`` must be called after every optimiser step (LDSeg's EMA denoiser)."""
        return False

    def sample_once(self, image, steps, sampler, generator):  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, image: torch.Tensor, *, steps: int | None = None, sampler: str | None = None,
               generator: torch.Generator | None = None, ensemble: int = 1, return_samples: bool = False,
               fusion: str = "mean"):
        """The ``ensemble`` samples' class probabilities fused into one (B, num_classes, *S).

        ``sampler`` defaults to the model's ``default_sampler``; ``steps`` to ``default_steps`` for DDIM and
        DPM-Solver and to T for DDPM. ``fusion``: ``mean`` (only
        a running sum is kept, so memory does not depend on N), ``staple`` or ``official``
        (salseg.nets.diffusion.fusion; these keep the N samples). With ``return_samples`` also returns the stacked
        per-sample probabilities (N, B, num_classes, *S) (for a per-voxel variance / uncertainty map).
        """
        if int(ensemble) < 1:
            raise ConfigError(f"ensemble must be >= 1, got {ensemble!r}")
        sampler = sampler or self.default_sampler
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if fusion not in FUSIONS:
            raise ConfigError(f"unknown ensemble fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        if steps is None and sampler != "ddpm":
            steps = self.default_steps
        keep = return_samples or fusion != "mean"
        total, samples = None, []
        for _ in range(int(ensemble)):
            probs = self.sample_once(image, steps, sampler, generator)
            if keep:
                samples.append(probs)
            else:
                total = probs.clone() if total is None else total.add_(probs)
            del probs
        if keep:
            stacked = torch.stack(samples)
            fused = fuse(stacked, fusion)
            return (fused, stacked) if return_samples else fused
        return total.div_(int(ensemble))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities from one default DDIM sample (NOT logits; see ``outputs_probabilities``)."""
        return self.sample(image)


class MaskDiffusion(DiffusionSegmenter):
    """Diffusion over the foreground masks in [-1, 1] with an eps-predicting ``denoise(x_t, image, t)``: the MSE
    training loss and the sampling shared by the ``paper`` and ``port`` presets (needs ``schedule``,
    ``mask_channels``)."""

    def target_mask(self, target: torch.Tensor) -> torch.Tensor:
        """(B, H, W) class indices -> (B, K, H, W) foreground masks in {-1, 1}."""
        return one_hot(target, self.num_classes)[:, 1:] * 2 - 1

    def training_loss(self, image: torch.Tensor, target: torch.Tensor, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        x0 = self.target_mask(target).to(image.dtype)
        t = self.schedule.sample_t(x0.shape[0], x0.device, generator)
        noise = randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        eps_hat = self.denoise(self.schedule.q_sample(x0, t, noise), image, t)
        return F.mse_loss(eps_hat.float(), noise.float())

    def sample_once(self, image, steps, sampler, generator):
        b, _, h, w = image.shape
        x0 = sample(lambda x, t: self.denoise(x, image, t), (b, self.mask_channels, h, w), self.schedule,
                             sampler=sampler, steps=steps, generator=generator, device=image.device,
                             dtype=image.dtype, clip=1.0)
        return fg_to_probs(((x0 + 1) / 2).clamp(0, 1))
