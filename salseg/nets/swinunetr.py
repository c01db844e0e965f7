"""``swinunetr``: 3D SwinUNETR (Hatamizadeh et al.), laid out like MONAI's ``SwinUNETR`` (v1, no checkpoint download).

Swin encoder: 2x2x2 patch embedding (conv, no norm) to ``width`` = feature size 48, four stages (depths [2,2,2,2],
heads [3,6,12,24], window 7, MLP ratio 4), each followed by patch merging; every hidden state is layer-normalised
without parameters before it is used. CNN side: residual conv blocks (conv3-IN-LeakyReLU, conv3-IN, 1x1 shortcut
where widths differ; InstanceNorm without affine; convs without bias) on the input and on hidden states 0, 1, 2, 4;
five up blocks (transposed conv 2, concat skip, residual block); 1x1x1 output conv. About 62.2 M parameters for
1 input channel and 14 classes at feature size 48. Sizes: multiples of 32 on every axis. RecA acts on the Swin
encoder (all four stages); the CNN decoder has no attention.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from salseg.errors import SalsegError
from salseg.nets.capabilities import Capabilities
from salseg.nets.registry import check_options, register_network
from salseg.nets.swin import PatchMerging, SwinStage, check_attention_options, init_swin_weights, stage_states

DIVISOR = 32


class ResBlock(nn.Module):
    """MONAI UnetResBlock: conv3-IN-LReLU-conv3-IN (+ 1x1 conv-IN shortcut if widths differ) -> add -> LReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.norm1, self.norm2 = nn.InstanceNorm3d(cout), nn.InstanceNorm3d(cout)
        self.act = nn.LeakyReLU(0.01, inplace=False)
        self.conv3 = nn.Conv3d(cin, cout, 1, bias=False) if cin != cout else None
        self.norm3 = nn.InstanceNorm3d(cout) if cin != cout else None

    def forward(self, x):
        res = x if self.conv3 is None else self.norm3(self.conv3(x))
        h = self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))
        return self.act(h + res)


class UpBlock(nn.Module):
    """MONAI UnetrUpBlock: transposed conv (kernel 2, stride 2, no bias), concat with the skip, ResBlock."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.transp_conv = nn.ConvTranspose3d(cin, cout, 2, 2, bias=False)
        self.conv_block = ResBlock(2 * cout, cout)

    def forward(self, x, skip):
        return self.conv_block(torch.cat([self.transp_conv(x), skip], 1))


class SwinEncoder(nn.Module):
    def __init__(self, in_channels: int, width: int, depths: Sequence[int], heads: Sequence[int], window: int,
                 mlp_ratio: float, drop_path: float):
        super().__init__()
        self.patch_embed = nn.Conv3d(in_channels, width, 2, 2)
        dpr = torch.linspace(0, float(drop_path), sum(depths)).tolist()
        self.layers = nn.ModuleList(
            SwinStage(width * 2 ** i, depths[i], heads[i], (window,) * 3, dpr[sum(depths[:i]):sum(depths[:i + 1])],
                      mlp_ratio, downsample=PatchMerging(width * 2 ** i, 3)) for i in range(len(depths)))

    @staticmethod
    def _out(x):  # parameter-free LayerNorm over channels, back to (B, C, D, H, W)
        return F.layer_norm(x, x.shape[-1:]).permute(0, 4, 1, 2, 3).contiguous()

    def forward(self, x, states):
        x = self.patch_embed(x).permute(0, 2, 3, 4, 1)
        hidden = [self._out(x)]
        for stage, state in zip(self.layers, states):
            x = stage(x, state)
            hidden.append(self._out(x))
        return hidden


class SwinUNETR(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 48, depths: Sequence[int] = (2, 2, 2, 2),
                 heads: Sequence[int] = (3, 6, 12, 24), window: int = 7, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, attention: str = "none", strategy: str = "ists", align: bool = False):
        super().__init__()
        check_attention_options(attention, strategy, align)
        depths, heads = [int(d) for d in depths], [int(h) for h in heads]
        if len(depths) != 4 or len(heads) != 4:
            raise SalsegError(f"swinunetr has four Swin stages: give 4 depths and 4 head counts, got depths "
                              f"{depths} and heads {heads}")
        self.attention, self.strategy, self.align = attention, strategy, bool(align)
        f = int(width)
        self.swinViT = SwinEncoder(in_channels, f, depths, heads, int(window), mlp_ratio, drop_path)
        self.encoder1 = ResBlock(in_channels, f)
        self.encoder2 = ResBlock(f, f)
        self.encoder3 = ResBlock(2 * f, 2 * f)
        self.encoder4 = ResBlock(4 * f, 4 * f)
        self.encoder10 = ResBlock(16 * f, 16 * f)
        self.decoder5 = UpBlock(16 * f, 8 * f)
        self.decoder4 = UpBlock(8 * f, 4 * f)
        self.decoder3 = UpBlock(4 * f, 2 * f)
        self.decoder2 = UpBlock(2 * f, f)
        self.decoder1 = UpBlock(f, f)
        self.out = nn.Conv3d(f, num_classes, 1)
        init_swin_weights(self.swinViT)

    @property
    def capabilities(self) -> Capabilities:
        """Sizes multiple of 32 on every axis; no deep supervision."""
        return Capabilities(divisor=(DIVISOR,) * 3)

    def forward(self, x):
        if x.ndim != 5 or any(s % DIVISOR for s in x.shape[2:]):
            raise SalsegError(f"swinunetr needs (B, C, D, H, W) input with every spatial size a multiple of "
                              f"{DIVISOR}, got shape {tuple(x.shape)}")
        if all(s == DIVISOR for s in x.shape[2:]):
            raise SalsegError(f"swinunetr needs more than one voxel at 1/{DIVISOR} resolution (its instance norm "
                              f"there would be undefined): make at least one axis {2 * DIVISOR} or more, got "
                              f"{tuple(x.shape[2:])}")
        hs = self.swinViT(x, stage_states(4, self.attention, self.strategy, self.align))
        enc0, enc1 = self.encoder1(x), self.encoder2(hs[0])
        enc2, enc3 = self.encoder3(hs[1]), self.encoder4(hs[2])
        dec = self.decoder5(self.encoder10(hs[4]), hs[3])
        dec = self.decoder4(dec, enc3)
        dec = self.decoder3(dec, enc2)
        dec = self.decoder2(dec, enc1)
        return self.out(self.decoder1(dec, enc0))


@register_network("swinunetr", dims=(3,), divisor=DIVISOR, has_self_attention=True,
                  recipe={"optimizer": "adamw", "lr": 1e-4, "weight_decay": 1e-5, "batch_size": 1,
                          "patch_size": [96, 96, 96]})
def swinunetr(in_channels: int, num_classes: int, dim: int = 3, plans: dict | None = None, *,
              deep_supervision: bool = False, **options) -> nn.Module:
    """3D SwinUNETR (feature size 48, depths [2,2,2,2], heads [3,6,12,24]); sizes multiple of 32."""
    del plans, deep_supervision
    if dim != 3:
        raise SalsegError(f"swinunetr is 3D only (asked for {dim}D)")
    known = {"width", "depths", "heads", "window", "mlp_ratio", "drop_path", "attention", "strategy", "align"}
    check_options("swinunetr", options, known)
    return SwinUNETR(in_channels, num_classes, **options)
