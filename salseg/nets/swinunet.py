"""``swinunet``: 2D Swin-Unet (Cao et al.), released "lite" configuration by default.

Patch embedding 4x4 (conv + LayerNorm) to ``width`` (96) channels; an encoder of four Swin stages (depths [2,2,2,2],
heads [3,6,12,24], window 7, MLP ratio 4) with patch merging between them; LayerNorm; a mirrored decoder whose first
step is a patch expansion and whose later stages take the encoder skip through concat + Linear(2C -> C); a final 4x
patch expansion and a 1x1 conv head without bias. One-channel input is repeated to 3 channels as the release does.
Sizes: any multiple of 32 (patch 4 x three merges); windows are padded where the grid is not a multiple of 7
(224 is the released size and needs no padding). RecA (``attention="reca"``) acts on the encoder stages, bottleneck
included; the decoder is untouched.

Training recipe (the release's): SGD, lr 0.05, momentum 0.9, weight decay 1e-4 (plain momentum, no Nesterov), batch
24 at 224 x 224.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from salseg.errors import SalsegError
from salseg.nets.capabilities import Capabilities
from salseg.nets.registry import check_options, register_network
from salseg.nets.swin import PatchExpand, PatchMerging, SwinStage, check_attention_options, init_swin_weights, \
    stage_states

DIVISOR = 32


class SwinUnet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 96, depths: Sequence[int] = (2, 2, 2, 2),
                 heads: Sequence[int] = (3, 6, 12, 24), window: int = 7, patch: int = 4, mlp_ratio: float = 4.0,
                 drop_path: float = 0.1, attention: str = "none", strategy: str = "ists", align: bool = False):
        super().__init__()
        check_attention_options(attention, strategy, align)
        depths, heads = [int(d) for d in depths], [int(h) for h in heads]
        if len(depths) != len(heads) or len(depths) < 2:
            raise SalsegError(f"swinunet needs one head count per stage (>= 2 stages), got depths {depths} "
                              f"and heads {heads}")
        n = len(depths)
        self.attention, self.strategy, self.align = attention, strategy, bool(align)
        self.repeat_gray = in_channels == 1
        self.patch, self.divisor = int(patch), int(patch) * 2 ** (n - 1)
        win = (int(window),) * 2
        dims = [int(width) * 2 ** i for i in range(n)]
        self.dims = dims
        dpr = torch.linspace(0, float(drop_path), sum(depths)).tolist()
        spans = [dpr[sum(depths[:i]):sum(depths[:i + 1])] for i in range(n)]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3 if self.repeat_gray else in_channels, dims[0], patch, patch)
        self.patch_embed.norm = nn.LayerNorm(dims[0])
        self.layers = nn.ModuleList(
            SwinStage(dims[i], depths[i], heads[i], win, spans[i], mlp_ratio,
                      downsample=PatchMerging(dims[i], 2) if i < n - 1 else None) for i in range(n))
        self.norm = nn.LayerNorm(dims[-1])
        self.layers_up = nn.ModuleList([PatchExpand(dims[-1], 2)])
        self.concat_back_dim = nn.ModuleList([nn.Identity()])
        for i in range(1, n):
            s = n - 1 - i
            self.concat_back_dim.append(nn.Linear(2 * dims[s], dims[s]))
            self.layers_up.append(SwinStage(dims[s], depths[s], heads[s], win, spans[s], mlp_ratio,
                                            upsample=PatchExpand(dims[s], 2) if i < n - 1 else None))
        self.norm_up = nn.LayerNorm(dims[0])
        self.up = PatchExpand(dims[0], 2, scale=patch, out_dim=dims[0])
        self.output = nn.Conv2d(dims[0], num_classes, 1, bias=False)
        init_swin_weights(self)

    @property
    def capabilities(self) -> Capabilities:
        """Sizes multiple of ``divisor``; an encoder/decoder for every module position; no deep supervision."""
        return Capabilities(divisor=(self.divisor, self.divisor), encoder_decoder=True)

    @property
    def encoder_channels(self) -> list[int]:
        """Channels of each ``encode`` level: the skips (width, 2 width, ...) and the bottleneck."""
        return [*self.dims[:-1], self.dims[-1]]

    def encode(self, x: torch.Tensor, inject=None) -> list[torch.Tensor]:
        """Encoder features as (B, C, H, W) maps, shallowest first: the inputs of stages 0..n-2 (the decoder's
        skips; level 0 is the patch embedding) and the normalised output of the last stage (the bottleneck).
        ``inject(f0) -> f0'`` replaces the patch embedding before stage 0 (module position "parallel")."""
        if x.ndim != 4 or any(s % self.divisor for s in x.shape[2:]):
            raise SalsegError(f"swinunet needs (B, C, H, W) input with H and W multiples of {self.divisor}, "
                              f"got shape {tuple(x.shape)}")
        if self.repeat_gray and x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = self.patch_embed.norm(self.patch_embed.proj(x).permute(0, 2, 3, 1))
        if inject is not None:
            x = inject(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        skips = []
        for stage, state in zip(self.layers, stage_states(len(self.layers), self.attention, self.strategy,
                                                           self.align)):
            skips.append(x)
            x = stage(x, state)
        x = self.norm(x)
        return [f.permute(0, 3, 1, 2) for f in (*skips[:-1], x)]

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Logits from ``encode``'s features."""
        skips = [f.permute(0, 2, 3, 1) for f in feats]
        x = skips[-1]
        n = len(self.layers)
        for i, up in enumerate(self.layers_up):
            if i:
                x = self.concat_back_dim[i](torch.cat([x, skips[n - 1 - i]], -1))
            x = up(x)
        x = self.up(self.norm_up(x))
        return self.output(x.permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@register_network("swinunet", dims=(2,), divisor=DIVISOR, has_self_attention=True,
                  recipe={"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False,
                          "batch_size": 24, "patch_size": [224, 224]})
def swinunet(in_channels: int, num_classes: int, dim: int = 2, plans: dict | None = None, *,
             deep_supervision: bool = False, **options) -> nn.Module:
    """2D Swin-Unet (patch 4, window 7, embed 96, depths [2,2,2,2]); sizes multiple of 32."""
    del plans, deep_supervision  # no deep supervision; the size comes from the input
    if dim != 2:
        raise SalsegError(f"swinunet is 2D only (asked for {dim}D)")
    known = {"width", "depths", "heads", "window", "patch", "mlp_ratio", "drop_path", "attention", "strategy",
             "align"}
    check_options("swinunet", options, known)
    return SwinUnet(in_channels, num_classes, **options)
