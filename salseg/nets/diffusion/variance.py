"""Learned ("range") variance of improved DDPM (Nichol & Dhariwal 2021), as the official MedSegDiff trains it.

The denoiser predicts eps and v in [-1, 1]; the reverse variance interpolates in log space between the posterior
variance beta~_t (clipped: its t = 0 value replaced by t = 1's) and beta_t:
    log sigma_t^2 = (v + 1)/2 * log beta_t + (1 - (v + 1)/2) * log beta~_t.
Hybrid loss = MSE(eps, eps_hat) + L_vb, L_vb in bits per dimension: KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
for t > 0 and the discretised Gaussian negative log-likelihood of x_0 (256 bins over [-1, 1]) for t = 0, with the
mean taken from a DETACHED eps_hat (the VB term trains the variance only). Respaced chains (fewer sampling steps)
recompute betas from alpha_bar on the subsequence.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


class Chain:
    """alpha_bar, betas and posterior coefficients of a (possibly respaced) chain over ``timesteps`` (ascending
    original step indices), float64 numpy, indexed by position in the chain."""

    def __init__(self, alphas_cumprod: np.ndarray, timesteps: Sequence[int] | None = None):
        abar_full = np.asarray(alphas_cumprod, dtype=np.float64)
        steps = np.arange(len(abar_full)) if timesteps is None else np.asarray(sorted(timesteps), dtype=np.int64)
        abar = abar_full[steps]
        prev = np.append(1.0, abar[:-1])
        self.timesteps = steps
        self.alphas_cumprod, self.alphas_cumprod_prev = abar, prev
        self.betas = 1.0 - abar / prev
        self.posterior_variance = self.betas * (1.0 - prev) / (1.0 - abar)
        var = self.posterior_variance
        self.posterior_log_variance_clipped = np.log(np.append(var[1], var[1:]) if len(var) > 1 else var)
        self.coef_x0 = self.betas * np.sqrt(prev) / (1.0 - abar)
        self.coef_xt = (1.0 - prev) * np.sqrt(1.0 - self.betas) / (1.0 - abar)

    @staticmethod
    def at(table: np.ndarray, index: torch.Tensor, ndim: int, like: torch.Tensor) -> torch.Tensor:
        """``table[index]`` (one of this chain's per-step arrays) as ``like``'s dtype, shaped to broadcast over it."""
        values = torch.as_tensor(table, dtype=torch.float64, device=like.device)[index]
        return values.to(like.dtype).reshape(-1, *([1] * (ndim - 1)))


def model_mean_logvar(chain: Chain, index: torch.Tensor, x_t: torch.Tensor, eps: torch.Tensor, v: torch.Tensor,
                      clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, log variance, x0 estimate) of p(x_{t-1} | x_t) from eps_hat and the variance output v."""
    n = x_t.ndim
    min_log = chain.at(chain.posterior_log_variance_clipped, index, n, x_t)
    max_log = torch.log(chain.at(chain.betas, index, n, x_t))
    frac = (v + 1) / 2
    logvar = frac * max_log + (1 - frac) * min_log
    abar = chain.at(chain.alphas_cumprod, index, n, x_t)
    x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    mean = chain.at(chain.coef_x0, index, n, x_t) * x0 + chain.at(chain.coef_xt, index, n, x_t) * x_t
    return mean, logvar, x0


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) of data quantised to 256 bins over [-1, 1] under N(mean, exp(log_scale)^2) (the outer bins open)."""
    centred = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _approx_std_normal_cdf(inv_std * (centred + 1.0 / 255.0))
    cdf_min = _approx_std_normal_cdf(inv_std * (centred - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def vb_bits(chain: Chain, index: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, eps: torch.Tensor,
            v: torch.Tensor) -> torch.Tensor:
    """Per-sample variational-bound term in bits per dimension (eps is used as given: detach it for the hybrid
    loss)."""
    n = x_t.ndim
    true_mean = chain.at(chain.coef_x0, index, n, x_t) * x0 + chain.at(chain.coef_xt, index, n, x_t) * x_t
    true_logvar = torch.log(chain.at(chain.posterior_variance, index, n, x_t).clamp(min=1e-20))
    mean, logvar, _ = model_mean_logvar(chain, index, x_t, eps, v)
    kl = mean_flat(normal_kl(true_mean, true_logvar, mean, logvar)) / math.log(2.0)
    nll = -mean_flat(discretized_gaussian_log_likelihood(x0, mean, 0.5 * logvar)) / math.log(2.0)
    return torch.where(index == 0, nll, kl)


def hybrid_loss(chain: Chain, index: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, noise: torch.Tensor,
                eps_hat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE(noise, eps_hat) + L_vb (with eps_hat detached in the VB term)."""
    mse = mean_flat((noise - eps_hat) ** 2)
    return mse + vb_bits(chain, index, x0, x_t, eps_hat.detach(), v)
