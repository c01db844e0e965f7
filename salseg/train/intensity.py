"""Intensity augmentation, consistent across the K slices of a 2.5d sample.

Input: a batch ``(B, K, C, *spatial)`` (K = 1 for 2d and 3d batches). Every parameter is drawn once per sample
and channel ``c`` and applied to all K slices of that channel: brightness multiplier, contrast factor, gamma, blur
sigma, low-resolution zoom, noise variance, and the decisions whether a transform (or a channel) is augmented at
all. Channels of a multi-channel image (RGB, multi-sequence MRI) keep independent draws, as in batchgenerators;
only the Gaussian noise field itself differs voxel by voxel (its variance is drawn once per sample). Statistics
that a transform preserves (contrast: mean and range; gamma: mean and std) are taken over a channel's K slices
together, as nnU-Net takes them over a 3D volume. Blur and low resolution act in-plane on each slice (2.5d) or on
the whole volume (3d).

Order and settings follow nnU-Net's default pipeline (salseg.train.augment.AugmentParams holds them): noise, blur,
brightness, contrast, low resolution, inverted gamma, gamma. Everything draws from the ``np.random.Generator``
passed in.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter


def _two_sided(rng: np.random.Generator, lo: float, hi: float) -> float:
    """batchgenerators' rule for factors around 1: half the draws below 1, half above (when the range spans 1)."""
    if rng.random() < 0.5 and lo < 1:
        return float(rng.uniform(lo, 1))
    return float(rng.uniform(max(lo, 1), hi))


def gaussian_noise(s: np.ndarray, rng: np.random.Generator, variance: tuple[float, float]) -> None:
    """Additive noise; the drawn value is used as the standard deviation, as batchgenerators does."""
    sd = float(rng.uniform(*variance))
    s += rng.normal(0.0, sd, size=s.shape).astype(s.dtype)


def gaussian_blur(s: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float], p_channel: float) -> None:
    for c in range(s.shape[1]):
        if rng.random() < p_channel:
            sg = float(rng.uniform(*sigma))
            for k in range(s.shape[0]):
                s[k, c] = gaussian_filter(s[k, c], sg, order=0)


def brightness(s: np.ndarray, rng: np.random.Generator, multiplier: tuple[float, float]) -> None:
    for c in range(s.shape[1]):
        s[:, c] *= float(rng.uniform(*multiplier))


def contrast(s: np.ndarray, rng: np.random.Generator, factor_range: tuple[float, float]) -> None:
    """(x - mean) * factor + mean, clipped to the channel's range (mean and range over its K slices)."""
    for c in range(s.shape[1]):
        factor = _two_sided(rng, *factor_range)
        g = s[:, c]
        mn, lo, hi = g.mean(), g.min(), g.max()
        s[:, c] = np.clip((g - mn) * factor + mn, lo, hi)


def low_resolution(s: np.ndarray, rng: np.random.Generator, zoom: tuple[float, float], p_channel: float) -> None:
    """Nearest-neighbour downsampling by a drawn zoom, then back up, bicubic in 2D (each slice in-plane) and
    trilinear in 3D: torch's ``interpolate`` as nnU-Net v2's transform and the batched path use it."""
    shape = [int(n) for n in s.shape[2:]]
    mode = "bicubic" if len(shape) == 2 else "trilinear"
    for c in range(s.shape[1]):
        if rng.random() < p_channel:
            z = float(rng.uniform(*zoom))
            target = [max(int(round(n * z)), 1) for n in shape]
            with torch.no_grad():
                x = torch.from_numpy(np.ascontiguousarray(s[:, c], np.float32))[:, None]   # (K, 1, *spatial)
                down = F.interpolate(x, size=target, mode="nearest-exact")
                s[:, c] = F.interpolate(down, size=shape, mode=mode, align_corners=False)[:, 0].numpy()


def gamma(s: np.ndarray, rng: np.random.Generator, gamma_range: tuple[float, float], invert: bool,
          eps: float = 1e-7) -> None:
    """x -> ((x - min) / range) ** gamma * range + min with the channel's mean and std restored (optionally on the
    inverted image)."""
    for c in range(s.shape[1]):
        g = -s[:, c] if invert else s[:, c].copy()
        mn, sd = g.mean(), g.std()
        gm = _two_sided(rng, *gamma_range)
        lo = g.min()
        rnge = g.max() - lo
        g = np.power((g - lo) / float(rnge + eps), gm) * float(rnge + eps) + lo
        g = (g - g.mean()) / (g.std() + 1e-8) * sd + mn
        s[:, c] = -g if invert else g


def augment_intensity(batch: np.ndarray, params, rng: np.random.Generator) -> np.ndarray:
    """Apply the intensity pipeline in place to ``batch`` (B, K, C, *spatial), float32; returns it."""
    a = params
    for s in batch:  # s: (K, C, *spatial), a view
        if rng.random() < a.p_noise:
            gaussian_noise(s, rng, a.noise_variance)
        if rng.random() < a.p_blur:
            gaussian_blur(s, rng, a.blur_sigma, a.p_blur_channel)
        if rng.random() < a.p_brightness:
            brightness(s, rng, a.brightness)
        if rng.random() < a.p_contrast:
            contrast(s, rng, a.contrast)
        if rng.random() < a.p_lowres:
            low_resolution(s, rng, a.lowres_zoom, a.p_lowres_channel)
        if rng.random() < a.p_gamma_inverted:
            gamma(s, rng, a.gamma, invert=True)
        if rng.random() < a.p_gamma:
            gamma(s, rng, a.gamma, invert=False)
    return batch
