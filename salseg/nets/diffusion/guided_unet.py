"""The denoiser of the official MedSegDiff: OpenAI's guided-diffusion ``UNetModel`` (Dhariwal & Nichol 2021), 2D.

Layer list (what the parameter counts of the ``official-*`` presets follow, docs/diffusion.md):
- time embedding: sinusoidal(``width``) -> Linear(4 width) -> SiLU -> Linear(4 width);
- input: 3x3 conv (in -> width); per level ``l`` with multiplier ``m_l``: ``res_blocks`` ResBlocks to ``width * m_l``
  (each followed by an attention block when the level's downsampling rate is in ``attention_rates``), then a
  stride-2 3x3 conv (not after the last level);
- middle: ResBlock, attention, ResBlock;
- output: per level (deepest first) ``res_blocks + 1`` ResBlocks over concat[h, skip] (+ attention at the same
  rates), nearest x2 + 3x3 conv after each level but the shallowest; GroupNorm -> SiLU -> zero-initialised 3x3 conv.
ResBlock = GN -> SiLU -> 3x3 conv, + Linear(SiLU(emb)) (added, or scale/shift of the second norm with
``scale_shift``), GN -> SiLU -> (dropout) -> zero-initialised 3x3 conv, + skip (1x1 conv when widths differ).
GroupNorm has 32 groups and runs in float32. Attention: GN, 1x1 qkv, ``heads`` heads split before q/k/v (the
"legacy" order), q and k each scaled by ch^-1/4 before the product, softmax in float32, zero-initialised 1x1 out.

``forward(x, t, bottleneck_add=None)``: ``bottleneck_add(taps) -> tensor`` (optional) receives the input-block
outputs and returns what is added to the deepest encoder output before the middle block (the condition network).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from salseg.errors import ConfigError
from salseg.nets.diffusion.blocks import timestep_embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32, C) computed in float32 (guided-diffusion's ``normalization``)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class GuidedResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, *,
                 scale_shift: bool = False, dropout: float = 0.0):
        super().__init__()
        out = int(out_channels or channels)
        self.scale_shift = bool(scale_shift)
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out if scale_shift else out))
        self.out_norm = GroupNorm32(out)
        self.out_rest = nn.Sequential(nn.SiLU(), nn.Dropout(p=dropout),
                                      zero_module(nn.Conv2d(out, out, 3, padding=1)))
        self.skip = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        e = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        return self.skip(x) + self.out_rest(h)


class GuidedAttention(nn.Module):
    def __init__(self, channels: int, heads: int = 1):
        super().__init__()
        if channels % heads:
            raise ConfigError(f"attention over {channels} channels cannot be split into {heads} heads")
        self.heads = int(heads)
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))
        ch = c // self.heads
        q, k, v = qkv.reshape(b * self.heads, 3 * ch, -1).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        a = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, -1)
        return (flat + self.proj_out(a)).reshape(b, c, *spatial)


class _Step(nn.ModuleList):
    """A sequence of layers, each called with ``emb`` if it is a ResBlock (guided-diffusion's
    ``TimestepEmbedSequential``)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, GuidedResBlock) else layer(x)
        return x


class _Up(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class GuidedUNet(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, *, width: int = 128,
                 mults: Sequence[int] = (1, 1, 2, 2, 4, 4), res_blocks: int = 2,
                 attention_rates: Sequence[int] = (16,), heads: int = 1, scale_shift: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        self.width, self.mults, self.res_blocks = int(width), tuple(int(m) for m in mults), int(res_blocks)
        emb = 4 * self.width
        self.time_embed = nn.Sequential(nn.Linear(self.width, emb), nn.SiLU(), nn.Linear(emb, emb))
        block = dict(scale_shift=scale_shift, dropout=dropout)
        rates = {int(r) for r in attention_rates}
        self.input_blocks = nn.ModuleList([_Step([nn.Conv2d(in_channels, self.width, 3, padding=1)])])
        chans, ch, ds = [self.width], self.width, 1
        self.taps: list[int] = []          # input-block index after each level's downsampling
        self.tap_channels: list[int] = []
        for level, mult in enumerate(self.mults):
            for _ in range(self.res_blocks):
                layers = [GuidedResBlock(ch, emb, mult * self.width, **block)]
                ch = mult * self.width
                if ds in rates:
                    layers.append(GuidedAttention(ch, heads))
                self.input_blocks.append(_Step(layers))
                chans.append(ch)
            if level != len(self.mults) - 1:
                self.input_blocks.append(_Step([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                self.taps.append(len(self.input_blocks) - 1)
                self.tap_channels.append(ch)
                chans.append(ch)
                ds *= 2
        self.bottleneck_channels = ch
        self.middle_block = _Step([GuidedResBlock(ch, emb, **block), GuidedAttention(ch, heads),
                                   GuidedResBlock(ch, emb, **block)])
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(self.mults))[::-1]:
            for i in range(self.res_blocks + 1):
                layers = [GuidedResBlock(ch + chans.pop(), emb, self.width * mult, **block)]
                ch = self.width * mult
                if ds in rates:
                    layers.append(GuidedAttention(ch, heads))
                if level and i == self.res_blocks:
                    layers.append(_Up(ch))
                    ds //= 2
                self.output_blocks.append(_Step(layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), zero_module(nn.Conv2d(self.width, out_channels, 3,
                                                                                    padding=1)))
        self.divisor = 2 ** (len(self.mults) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                bottleneck_add: Callable[[list[torch.Tensor]], torch.Tensor] | None = None) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.width).to(x.dtype))
        hs, h = [], x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        if bottleneck_add is not None:
            h = h + bottleneck_add(hs)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
