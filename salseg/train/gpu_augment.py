"""Batched augmentation with torch on any device (``--augment-device cuda|cpu``): the CPU path's transforms, applied
to the whole batch at once in the main process.

The settings are read from the CPU path's own ``AugmentParams`` (``build_transforms(...).params``), so both paths
draw their parameters from the same distributions (tests/train/test_gpu_augment.py compares the draws):
- spatial: per sample, rotation with probability ``p_rot_per_sample`` (each axis's angle uniform in its range; 3D
  rotation matrix R_x R_y R_z as batchgenerators builds it), scaling with ``p_scale_per_sample`` (half the time
  uniform in (lo, 1), else in (1, hi); > 1 zooms out), patch centred in the sampled region, then mirroring of each
  axis with probability 1/2. All of it is ONE ``affine_grid`` / ``grid_sample`` per batch: data bicubic in 2D,
  trilinear in 3D (torch has no tricubic; batchgenerators uses order-3 splines), zeros outside; label maps nearest,
  -1 outside, so they stay integer-valued and aligned with the image (the same grid samples both). Mirroring is a
  sign of the grid; samples whose matrix is the identity are sampled exactly at pixel centres (a plain crop).
- intensity, each with its per-sample probability and its per-channel parameters: Gaussian noise (std uniform in
  ``noise_variance``, batchgenerators' naming), Gaussian blur (separable, truncated at 4 sigma; edges replicated
  where scipy reflects), multiplicative brightness, contrast (range preserved), simulated low resolution (nearest
  down, bicubic/trilinear up), gamma (inverted and plain, statistics retained). Mirroring comes after intensity on
  the CPU path and first here; every intensity transform is symmetric under a flip, so the distributions agree.
2.5d batches (B, K, C, Y, X) get one spatial transform for all K*C slice-channels and, as the CPU path
(salseg.train.intensity), one intensity draw per sample and channel for all K slices, with statistics (mean,
range, std) over the K slices together (``BatchAugmentSpec.slice_consistent``; False draws per slice-channel).

Random numbers come from a ``torch.Generator`` on the augmentation device, reseeded per epoch from the run's seed key
(``reseed``), so a run is reproducible for a given device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from salseg.errors import ConfigError
from salseg.train.augment import AugmentParams

AUGMENT_DEVICES = ("cpu", "cuda")


@dataclass
class BatchAugmentSpec:
    """The augmentation settings: the CPU path's own ``AugmentParams`` (every probability and range) and the
    geometry the batched path derives from it (angles in radians per axis, mirrored axes)."""

    dim: int
    patch_size: list[int]
    params: AugmentParams
    slice_consistent: bool = True   # 2.5d: one intensity draw per sample and channel for all K slices

    @property
    def angles(self) -> list[tuple[float, float]]:
        """Radians per rotation axis (x, y, z in batchgenerators' naming); 2D rotates about x only."""
        lo, hi = (math.radians(float(v)) for v in self.params.rotation_deg)
        return [(lo, hi)] * 3 if self.dim == 3 else [(lo, hi), (0.0, 0.0), (0.0, 0.0)]

    @property
    def mirror_axes(self) -> tuple[int, ...]:
        return tuple(range(self.dim)) if self.params.mirror else ()

    @property
    def gammas(self) -> list[tuple[float, tuple[float, float], bool]]:
        """(p, range, invert) of the two gamma transforms, inverted first as on the CPU path."""
        a = self.params
        return [(float(a.p_gamma_inverted), tuple(a.gamma), True), (float(a.p_gamma), tuple(a.gamma), False)]

    @classmethod
    def from_params(cls, params: AugmentParams, patch_size: Sequence[int], dim: int) -> "BatchAugmentSpec":
        """From an ``AugmentParams`` (salseg.train.augment), with slice-consistent intensity."""
        return cls(dim=int(dim), patch_size=[int(p) for p in patch_size], params=params)

    @classmethod
    def from_transforms(cls, transforms, patch_size: Sequence[int], dim: int) -> "BatchAugmentSpec":
        """The settings of what ``salseg.train.augment.build_transforms`` returns (its ``params``)."""
        params = getattr(transforms, "params", None)
        if params is None:
            raise ConfigError(f"batched augmentation needs AugmentParams settings, got {type(transforms).__name__}")
        return cls.from_params(params, getattr(transforms, "patch", patch_size), dim)


def rotation_matrices(angles: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, dim, dim) rotation matrices as batchgenerators builds them: 2D [[c, -s], [s, c]] of angle x; 3D
    R_x(a_x) R_y(a_y) R_z(a_z). ``angles`` (B, 3), radians."""
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    if dim == 2:
        return torch.stack([torch.stack([c[:, 0], -s[:, 0]], -1), torch.stack([s[:, 0], c[:, 0]], -1)], 1)
    rx = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, c[:, 0], -s[:, 0]], -1),
                      torch.stack([zero, s[:, 0], c[:, 0]], -1)], 1)
    ry = torch.stack([torch.stack([c[:, 1], zero, s[:, 1]], -1), torch.stack([zero, one, zero], -1),
                      torch.stack([-s[:, 1], zero, c[:, 1]], -1)], 1)
    rz = torch.stack([torch.stack([c[:, 2], -s[:, 2], zero], -1), torch.stack([s[:, 2], c[:, 2], zero], -1),
                      torch.stack([zero, zero, one], -1)], 1)
    return rx @ ry @ rz


def _two_sided(g: torch.Generator, n, lo: float, hi: float, device) -> torch.Tensor:
    """batchgenerators' two-sided draw: with p 1/2 (when lo < 1) uniform in (lo, 1), else in (max(lo, 1), hi)."""
    low = torch.rand(n, generator=g, device=device) < 0.5
    u = torch.rand(n, generator=g, device=device)
    a = torch.where(low & (lo < 1), torch.full_like(u, lo), torch.full_like(u, max(lo, 1.0)))
    b = torch.where(low & (lo < 1), torch.ones_like(u), torch.full_like(u, hi))
    return a + (b - a) * u


def _uniform(g, n, lo, hi, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


class BatchAugmenter:
    """Augment whole batches on ``device``; call it with (data (B, C|K, ..., *spatial), seg (B, 1, *spatial))."""

    def __init__(self, spec: BatchAugmentSpec, device: str | torch.device = "cpu", seed: int = 0):
        self.spec, self.device = spec, torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.reseed([seed])

    def reseed(self, key: Sequence[int]) -> None:
        state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
        self.generator.manual_seed(int(state[0]) << 32 | int(state[1]))

    # -- parameters -------------------------------------------------------------------------------------------
    def draw_spatial(self, b: int) -> dict:
        """Per-sample spatial parameters: rotation flag and angles (B, 3), scale flag and factor, mirror flags."""
        s, a, g, dev = self.spec, self.spec.params, self.generator, self.device
        rot = torch.rand(b, generator=g, device=dev) < a.p_rotation
        angles = torch.zeros(b, 3, device=dev)
        for i in range(3 if s.dim == 3 else 1):   # batchgenerators' per-axis probability is 1 in nnU-Net's set-up
            angles[:, i] = torch.where(rot, _uniform(g, b, *s.angles[i], dev), torch.zeros(b, device=dev))
        scaled = torch.rand(b, generator=g, device=dev) < a.p_scale
        scale = torch.where(scaled, _two_sided(g, b, *a.scale, dev), torch.ones(b, device=dev))
        mirror = torch.zeros(b, s.dim, dtype=torch.bool, device=dev)
        for a in s.mirror_axes:
            mirror[:, a] = torch.rand(b, generator=g, device=dev) < 0.5
        return {"rotated": rot, "angles": angles, "scaled": scaled, "scale": scale, "mirror": mirror}

    def spatial_matrices(self, p: dict) -> torch.Tensor:
        """(B, dim, dim) maps from patch offsets to source offsets, in voxels and array axis order."""
        rot = rotation_matrices(p["angles"], self.spec.dim)
        # batchgenerators: coords' = (coords^T R)^T * scale = R^T coords * scale; then mirroring of output axes
        m = rot.transpose(1, 2) * p["scale"][:, None, None]
        sign = 1.0 - 2.0 * p["mirror"].to(m.dtype)
        return m * sign[:, None, :]

    # -- spatial ----------------------------------------------------------------------------------------------
    def _grid(self, m: torch.Tensor, in_shape: Sequence[int]) -> torch.Tensor:
        """Normalised sampling grid (B, *patch, dim) for grid_sample (align_corners=False, last dim x, y[, z])."""
        patch = self.spec.patch_size
        dev = m.device
        mesh = torch.stack(torch.meshgrid(*[torch.arange(n, device=dev, dtype=torch.float32) - (n - 1) / 2
                                            for n in patch], indexing="ij"), -1)          # (*patch, dim)
        offsets = torch.einsum("bij,...j->b...i", m, mesh)                             # (B, *patch, dim)
        n = torch.tensor([float(x) for x in in_shape], device=dev)
        start = torch.tensor([float((i - p) // 2) for i, p in zip(in_shape, patch)], device=dev)
        centre = start + (torch.tensor([float(p) for p in patch], device=dev) - 1) / 2  # exact crop centre
        coords = offsets + centre
        return ((2 * coords + 1) / n - 1).flip(-1)

    def spatial(self, data: torch.Tensor, seg: torch.Tensor, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.spec
        grid = self._grid(self.spatial_matrices(p), data.shape[2:])
        mode = "bicubic" if s.dim == 2 else "bilinear"
        out = F.grid_sample(data, grid, mode=mode, padding_mode="zeros", align_corners=False)
        lab = F.grid_sample(seg.float() + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False) - 1
        return out, lab.round().to(seg.dtype)

    # -- intensity --------------------------------------------------------------------------------------------
    def _samples(self, b: int, p: float) -> torch.Tensor:
        return torch.rand(b, generator=self.generator, device=self.device) < p

    def intensity(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """Intensity transforms of x (B, K*C, *spatial): parameters per sample and channel c, shared by the K
        slices of a 2.5d sample when ``k`` > 1 (statistics such as mean, range and std over those K slices)."""
        s, g, dev = self.spec.params, self.generator, self.device
        b, c = x.shape[0], x.shape[1] // k
        x = x.reshape(b, k, c, *x.shape[2:])
        view = (b, 1, c) + (1,) * (x.ndim - 3)
        stats = (1,) + tuple(range(3, x.ndim))          # a channel's K slices and its voxels

        def per_slice(t):                               # (B, C) -> (B, K*C), the value of each slice-channel
            return t[:, None, :].expand(b, k, c).reshape(b, k * c)

        def flat(t):
            return t.reshape(b, k * c, *t.shape[3:])

        if s.p_noise > 0:
            on = self._samples(b, s.p_noise)
            std = _uniform(g, b, *s.noise_variance, dev) * on
            x = x + torch.randn(x.shape, generator=g, device=dev) * std.view(b, *([1] * (x.ndim - 1)))
        if s.p_blur > 0:
            on = self._samples(b, s.p_blur)[:, None] & (torch.rand(b, c, generator=g, device=dev) < s.p_blur_channel)
            sigma = _uniform(g, (b, c), *s.blur_sigma, dev)
            x = gaussian_blur(flat(x), per_slice(torch.where(on, sigma, torch.zeros_like(sigma)))).reshape(x.shape)
        if s.p_brightness > 0:
            on = self._samples(b, s.p_brightness)[:, None]
            mult = _uniform(g, (b, c), *s.brightness, dev)
            x = x * torch.where(on, mult, torch.ones_like(mult)).view(view)
        if s.p_contrast > 0:
            on = self._samples(b, s.p_contrast)[:, None].expand(b, c)
            factor = torch.where(on, _two_sided(g, (b, c), *s.contrast, dev), torch.ones(b, c, device=dev))
            mean = x.mean(dim=stats, keepdim=True)
            y = (x - mean) * factor.view(view) + mean
            y = torch.minimum(torch.maximum(y, x.amin(stats, keepdim=True)), x.amax(stats, keepdim=True))
            x = y
        if s.p_lowres > 0:
            on = self._samples(b, s.p_lowres)[:, None] & (torch.rand(b, c, generator=g, device=dev)
                                                          < s.p_lowres_channel)
            zoom = _uniform(g, (b, c), *s.lowres_zoom, dev)
            x = simulate_low_resolution(flat(x), per_slice(torch.where(on, zoom, torch.ones_like(zoom))))
            x = x.reshape(b, k, c, *x.shape[2:])
        for p_gamma, rng, invert in self.spec.gammas:
            on = self._samples(b, p_gamma)[:, None].expand(b, c)
            gamma = torch.where(on, _two_sided(g, (b, c), *rng, dev), torch.ones(b, c, device=dev))
            x = gamma_transform(x, gamma.view(view), on.reshape(view), invert, stats)
        return flat(x)

    def __call__(self, data: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(data, seg) on any device -> augmented (data (B, ..., *patch), seg (B, 1, *patch)) on ``self.device``."""
        s = self.spec
        data = data.to(self.device, non_blocking=True).float()
        seg = seg.to(self.device, non_blocking=True)
        shape = data.shape
        flat = data.reshape(shape[0], -1, *shape[-s.dim:])  # 2.5d (B, K, C, ...) -> (B, K*C, ...)
        params = self.draw_spatial(shape[0])
        out, lab = self.spatial(flat, seg, params)
        k = shape[1] if s.slice_consistent and data.ndim == s.dim + 3 else 1
        out = self.intensity(out, k)
        return out.reshape(*shape[:-s.dim], *s.patch_size).contiguous(), lab


def _gauss_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, 2 radius + 1) normalised 1D Gaussians, truncated at int(4 sigma + 0.5) as scipy; sigma 0 = identity."""
    k = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    safe = sigma.clamp_min(1e-6)[:, None]
    w = torch.exp(-0.5 * (k[None] / safe) ** 2)
    w = torch.where(k[None].abs() <= torch.floor(4 * sigma[:, None] + 0.5), w, torch.zeros_like(w))
    w = torch.where(sigma[:, None] > 0, w, (k[None] == 0).float())
    return w / w.sum(1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur every (sample, channel) of x (B, C, *spatial) with its own isotropic sigma (B, C); 0 = unchanged."""
    if not bool((sigma > 0).any()):
        return x
    b, c = x.shape[:2]
    nd = x.ndim - 2
    radius = max(1, int(math.floor(4 * float(sigma.max()) + 0.5)))
    kern = _gauss_kernels(sigma.reshape(-1), radius)                                    # (B*C, K)
    y = x.reshape(1, b * c, *x.shape[2:])
    conv = F.conv2d if nd == 2 else F.conv3d
    for axis in range(nd):
        shape = [b * c, 1] + [1] * nd
        shape[2 + axis] = kern.shape[1]
        pad = [0, 0] * nd
        pad[2 * (nd - 1 - axis)] = pad[2 * (nd - 1 - axis) + 1] = radius
        y = conv(F.pad(y, pad, mode="replicate"), kern.reshape(shape), groups=b * c)
    return y.reshape(x.shape)


def simulate_low_resolution(x: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """Channels with zoom < 1: nearest down to round(shape * zoom), then back up (bicubic 2D / trilinear 3D)."""
    todo = torch.nonzero(zoom < 1).tolist()
    if not todo:
        return x
    x = x.clone()
    spatial = x.shape[2:]
    mode = "bicubic" if len(spatial) == 2 else "trilinear"
    zooms = zoom.detach().cpu().numpy()
    for bi, ci in todo:
        small = [max(1, int(round(n * float(zooms[bi, ci])))) for n in spatial]
        ch = x[bi:bi + 1, ci:ci + 1]
        down = F.interpolate(ch, size=small, mode="nearest-exact")
        x[bi:bi + 1, ci:ci + 1] = F.interpolate(down, size=list(spatial), mode=mode, align_corners=False)
    return x


def gamma_transform(x: torch.Tensor, gamma: torch.Tensor, on: torch.Tensor, invert: bool,
                    axes: tuple[int, ...]) -> torch.Tensor:
    """batchgenerators' gamma with retained mean and std (statistics over ``axes``), where ``on``; ``gamma`` and
    ``on`` broadcast against x."""
    if not bool(on.any()):
        return x
    y = -x if invert else x
    mn, sd = y.mean(axes, keepdim=True), y.std(axes, keepdim=True, unbiased=False)
    lo = y.amin(axes, keepdim=True)
    rng = y.amax(axes, keepdim=True) - lo
    z = ((y - lo) / (rng + 1e-7)).clamp_min(0) ** gamma * (rng + 1e-7) + lo
    z = z - z.mean(axes, keepdim=True)
    z = z / (z.std(axes, keepdim=True, unbiased=False) + 1e-8) * sd + mn
    z = -z if invert else z
    return torch.where(on, z, x)


def make_augmenter(transforms, patch_size: Sequence[int], dim: int, device: str | torch.device,
                   seed: int = 0) -> BatchAugmenter:
    """The batched equivalent of ``transforms`` (a ``build_transforms`` result) on ``device``."""
    name = str(device)
    if name.split(":")[0] not in AUGMENT_DEVICES:
        raise ConfigError(f"unknown --augment-device {name!r}; choose cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--augment-device cuda was asked for, but no CUDA GPU is available")
    return BatchAugmenter(BatchAugmentSpec.from_transforms(transforms, patch_size, dim), device, seed)
