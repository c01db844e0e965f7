"""Building blocks of the diffusion segmenters, dimension-generic (2D and 3D) where it matters.

- ``TimeEmbedding``: sinusoidal embedding of t -> Linear -> SiLU -> Linear.
- ``ResBlock``: conv-GN-SiLU, + projected time embedding, conv-GN-SiLU, with a residual (1x1 conv when the width
  changes). ``emb_dim=0`` gives a ResBlock without time input.
- ``AttentionBlock``: GN, multi-head self-attention over all voxels, output projection, residual.
- ``Downsample`` (strided 3-conv) and ``Upsample`` (nearest x2 + 3-conv).
Convolution classes come from ``salseg.nets.blocks`` (shared with every network).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from salseg.errors import ConfigError
from salseg.nets.blocks import conv_nd


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with gcd(channels / 2, 32) groups: at least 2 channels per group, so even a 1-voxel feature map
    of a tiny test width normalises over more than one value."""
    return nn.GroupNorm(math.gcd(max(int(channels) // 2, 1), 32), int(channels))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim): [cos(t w_i), sin(t w_i)], w_i = max_period^(-i / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


class TimeEmbedding(nn.Module):
    def __init__(self, base_dim: int, out_dim: int):
        super().__init__()
        self.base_dim = int(base_dim)
        self.mlp = nn.Sequential(nn.Linear(base_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.base_dim))


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, emb_dim: int = 0, *, dim: int = 2):
        super().__init__()
        conv = conv_nd(dim)
        self.conv1 = conv(in_channels, out_channels, 3, padding=1)
        self.norm1 = group_norm(out_channels)
        self.emb = nn.Linear(emb_dim, out_channels) if emb_dim else None
        self.conv2 = conv(out_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.skip = nn.Identity() if in_channels == out_channels else conv(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        if self.emb is not None and emb is not None:
            h = h + self.emb(F.silu(emb)).reshape(*emb.shape[:1], -1, *([1] * (x.ndim - 2)))
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class AttentionBlock(nn.Module):
    """Self-attention over all spatial positions (any dim), heads of ``head_channels`` channels."""

    def __init__(self, channels: int, *, dim: int = 2, head_channels: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        if channels % self.heads:
            self.heads = 1
        self.norm = group_norm(channels)
        self.qkv = conv_nd(dim)(channels, 3 * channels, 1)
        self.proj = conv_nd(dim)(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, -1).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(x.shape))


class Downsample(nn.Module):
    def __init__(self, channels: int, out_channels: int | None = None, *, dim: int = 2):
        super().__init__()
        self.conv = conv_nd(dim)(channels, out_channels or channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, out_channels: int | None = None, *, dim: int = 2):
        super().__init__()
        self.conv = conv_nd(dim)(channels, out_channels or channels, 3, padding=1)

    def forward(self, x, size=None):
        x = F.interpolate(x, size=size, mode="nearest") if size is not None else \
            F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x)


def spectrum_weight(weight: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """An FF-Parser map ``weight`` (C, H0, W0 // 2 + 1, 2) (real, imaginary) as a complex (C, h, w // 2 + 1) map: as
    stored when the sizes agree, else resampled bilinearly in fftshift order (centred frequency rows)."""
    if weight.shape[1:3] != (h, w // 2 + 1):
        grid = torch.fft.fftshift(weight.permute(0, 3, 1, 2), dim=2)      # (C, 2, H0, W0r), centred rows
        grid = F.interpolate(grid, size=(h, w // 2 + 1), mode="bilinear", align_corners=True)
        weight = torch.fft.ifftshift(grid, dim=2).permute(0, 2, 3, 1)
    return torch.view_as_complex(weight.float().contiguous())


def apply_spectrum_weight(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """FF-Parser: irfft2(W * rfft2(x)) with orthonormal FFTs, in float32, returned in x's dtype."""
    h, w = x.shape[-2:]
    spec = torch.fft.rfft2(x.float(), norm="ortho")
    return torch.fft.irfft2(spec * spectrum_weight(weight, h, w), s=(h, w), norm="ortho").to(x.dtype)


def mask_setup(num_classes: int, patch_size, divisor: int, name: str) -> tuple[tuple[int, ...], int]:
    """(2D patch, number of mask channels) of a mask-diffusion model, refusing fewer than 2 classes or a patch that
    is not divisible by ``divisor``; ``name`` names the model (and preset) in the message."""
    if num_classes < 2:
        raise ConfigError(f"medsegdiff needs at least 2 classes (background + foreground), got {num_classes}")
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 2 or any(p % divisor for p in patch):
        raise ConfigError(f"{name} needs a 2D patch size divisible by {divisor}, got {list(patch)}")
    return patch, int(num_classes) - 1


def one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, *S) class indices (negative = outside the crop -> background) -> (B, num_classes, *S) float."""
    t = target.long().clamp_min(0)
    return F.one_hot(t, num_classes).movedim(-1, 1).float()


def sinusoidal(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim) as the released LDSeg code and the MedSegDiff port compute it:
    [sin(t w_i), cos(t w_i)], w_i = 10000^(-i / (dim/2 - 1))."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=-1)


def pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Zero-pad the spatial axes at their end to a multiple; returns the padded tensor and the original size."""
    size = tuple(x.shape[2:])
    pads = []
    for s in reversed(size):
        pads += [0, (-s) % multiple]
    return (F.pad(x, pads) if any(pads) else x), size


def crop_to(x: torch.Tensor, size) -> torch.Tensor:
    return x[(slice(None), slice(None)) + tuple(slice(0, s) for s in size)]
