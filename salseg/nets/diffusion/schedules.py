"""Noise schedules of the diffusion segmenters (DDPM notation, T steps, index t = 0..T-1).

``linear``: Ho et al. 2020, betas evenly spaced from 1e-4 to 0.02 (for T = 1000; scaled by 1000/T otherwise, as in
Nichol & Dhariwal's improved DDPM code; clipped to 0.999
for very short schedules). ``cosine``: Nichol & Dhariwal 2021,
``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos(((t/T + s) / (1 + s)) * pi/2)^2``, s = 0.008, betas clipped to 0.999.
``alphas_cumprod[t]`` is alpha_bar after step t+1 (the closed form at (t+1)/T).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from salseg.errors import ConfigError

SCHEDULES = ("linear", "cosine")


def linear_betas(timesteps: int) -> np.ndarray:
    scale = 1000.0 / timesteps
    return np.minimum(np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64), 0.999)


def cosine_alpha_bar(t: np.ndarray | float, s: float = 0.008) -> np.ndarray:
    """The continuous closed form ``alpha_bar(t)`` for t in [0, 1] (un-normalised by f(0))."""
    return np.cos((np.asarray(t, dtype=np.float64) + s) / (1 + s) * math.pi / 2) ** 2


def cosine_betas(timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    t = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    abar = cosine_alpha_bar(t) / cosine_alpha_bar(0.0)
    return np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)


def make_betas(schedule: str, timesteps: int) -> np.ndarray:
    if int(timesteps) < 1:
        raise ConfigError(f"timesteps must be >= 1, got {timesteps!r}")
    if schedule == "linear":
        return linear_betas(int(timesteps))
    if schedule == "cosine":
        return cosine_betas(int(timesteps))
    raise ConfigError(f"unknown noise schedule {schedule!r}; choose {' or '.join(SCHEDULES)}")


class NoiseSchedule(nn.Module):
    """Schedule tensors as non-persistent buffers (they follow ``.to(device)`` and are not saved in checkpoints:
    they are rebuilt from ``schedule`` and ``timesteps``, which the model's options hold)."""

    def __init__(self, schedule: str = "linear", timesteps: int = 1000):
        super().__init__()
        betas = make_betas(schedule, timesteps)
        alphas_cumprod = np.cumprod(1.0 - betas)
        prev = np.append(1.0, alphas_cumprod[:-1])
        self.name, self.timesteps = schedule, int(timesteps)
        for name, value in {"betas": betas, "alphas_cumprod": alphas_cumprod, "alphas_cumprod_prev": prev,
                            "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
                            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
                            "posterior_variance": betas * (1.0 - prev) / (1.0 - alphas_cumprod)}.items():
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32), persistent=False)
        # float64 copy for the samplers' scalar arithmetic (exact, device-independent)
        self.alphas_cumprod_f64 = alphas_cumprod

    def extract(self, values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """``values[t]`` shaped (B, 1, ..., 1) to broadcast against a tensor with ``ndim`` dimensions."""
        return values.to(t.device)[t].reshape(-1, *([1] * (ndim - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps."""
        return (self.extract(self.sqrt_alphas_cumprod, t, x0.ndim).to(x0.dtype) * x0
                + self.extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim).to(x0.dtype) * noise)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        a = self.extract(self.alphas_cumprod, t, x_t.ndim).to(x_t.dtype)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    def sample_t(self, batch: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform training timesteps, one per sample."""
        gen_device = generator.device if generator is not None else "cpu"
        return torch.randint(0, self.timesteps, (batch,), generator=generator, device=gen_device).to(device)
