"""The condition ("highway") network of the official MedSegDiff V1: an nnU-Net-v1-style generic U-Net on the image.

Layer list (parameter counts in docs/diffusion.md):
- encoder: ``pools`` stages of two conv-BatchNorm-LeakyReLU(0.01) blocks (3x3, bias), features ``base * 2^d``
  capped at 480, 2x2 max pooling after each stage; bottleneck: two more blocks at min(2 * last, 480) -> last;
- decoder per level: bilinear x2, concat with the skip, a block to the skip width, a block to the next shallower
  width (the skip width at the last level);
- calibration head: 1x1 conv without bias to ``out_channels``, sigmoid (the calibration map of the official code);
- gating from the main U-Net at the first ``pools - 1`` scales: the main encoder's features after its downsampling
  at level d (resolution H / 2^(d+1)) -> 1x1 conv to this stage's width -> FF-Parser -> gate
  ``x <- x * conv1x1_to_1(h) * GAP(h)`` applied to this network's pooled features at the same resolution;
- bottleneck projection: 1x1 conv from the bottleneck width to the main U-Net's bottleneck width; its output is
  ADDED to the main U-Net's deepest encoder output before the middle block. (The official code creates this conv
  inside ``forward`` with fresh random weights at every call; here it is an ordinary, trained layer.)
FF-Parser (official form): weight (C, H_d, W_d // 2 + 1, 2) = 0.02 * randn viewed as complex, rfft2 (orthonormal)
-> multiply -> irfft2, sized from the configured patch (resampled for other sizes, like salseg's paper FF-Parser).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from salseg.errors import ConfigError
from salseg.nets.diffusion.blocks import apply_spectrum_weight

MAX_FEATURES_2D = 480


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.01, inplace=True))


def _he_init(module: nn.Module) -> None:
    """nnU-Net v1's InitWeights_He(1e-2): He-normal conv weights, zero biases."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class OfficialFFParser(nn.Module):
    def __init__(self, channels: int, size: tuple[int, int]):
        super().__init__()
        h, w = int(size[0]), int(size[1])
        self.weight = nn.Parameter(torch.randn(channels, h, w // 2 + 1, 2) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_spectrum_weight(x, self.weight)


class ConditionNet(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, patch_size: Sequence[int], *,
                 tap_channels: Sequence[int], bottleneck_out: int, base: int = 32, pools: int = 5):
        super().__init__()
        patch = [int(p) for p in patch_size]
        if any(p % 2 ** pools for p in patch):
            raise ConfigError(f"the MedSegDiff condition network pools {pools} times: the patch {patch} must be "
                              f"divisible by {2 ** pools}")
        if len(tap_channels) < pools - 1:
            raise ConfigError(f"the condition network gates at {pools - 1} scales, but the denoiser has only "
                              f"{len(tap_channels)} downsamplings")
        feats = [min(base * 2 ** d, MAX_FEATURES_2D) for d in range(pools)]
        self.encoder = nn.ModuleList()
        cin = in_channels
        for f in feats:
            self.encoder.append(nn.Sequential(_block(cin, f), _block(f, f)))
            cin = f
        mid = min(feats[-1] * 2, MAX_FEATURES_2D)
        self.bottleneck = nn.Sequential(_block(feats[-1], mid), _block(mid, feats[-1]))
        self.decoder = nn.ModuleList()
        for u in range(pools):
            skip = feats[-(u + 1)]
            out = feats[-(u + 2)] if u != pools - 1 else skip
            self.decoder.append(nn.Sequential(_block(2 * skip, skip), _block(skip, out)))
        self.cal_head = nn.Conv2d(feats[0], out_channels, 1, bias=False)
        self.gate_in = nn.ModuleList(nn.Conv2d(int(tap_channels[d]), feats[d], 1) for d in range(pools - 1))
        self.gate_map = nn.ModuleList(nn.Conv2d(feats[d], 1, 1) for d in range(pools - 1))
        self.ff_parsers = nn.ModuleList(
            OfficialFFParser(feats[d], (patch[0] // 2 ** (d + 1), patch[1] // 2 ** (d + 1))) for d in range(pools - 1))
        self.apply(_he_init)
        self.to_bottleneck = nn.Conv2d(feats[-1], int(bottleneck_out), 1)  # default init, as the official conv
        self.pools = int(pools)

    def forward(self, image: torch.Tensor, taps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(addition to the denoiser's bottleneck, calibration map in [0, 1]) from the image and the denoiser's
        encoder features after each of its downsamplings (shallowest first)."""
        x, skips = image, []
        for d, stage in enumerate(self.encoder):
            x = stage(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
            if d < self.pools - 1:
                h = self.ff_parsers[d](self.gate_in[d](taps[d]))
                x = x * self.gate_map[d](h) * h.mean(dim=(2, 3), keepdim=True)
        x = self.bottleneck(x)
        to_denoiser = self.to_bottleneck(x)
        for u, block in enumerate(self.decoder):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skips[-(u + 1)]], dim=1))
        return to_denoiser, torch.sigmoid(self.cal_head(x))
