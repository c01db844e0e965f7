"""``mtunet``: MT-UNet, the baseline of the released ACDC code (spec/modules.md §3); blocks in ``mtunet_blocks``.

Layout (``width`` w = 64 by default; sizes for a 224 x 224 input):
- CNN stem: DoubleConv 3 -> w (224²), maxpool, DoubleConv -> 2w (112²), maxpool, DoubleConv -> 4w (56²), maxpool;
  a 1x1 conv-BN-ReLU 4w -> 4w at 28²; flattened to 784 tokens plus a learned position embedding (784 x 4w);
- transformer encoder: [2 EA modules, conv2x2/2-BN-ReLU to twice the width] at 28² (4w) and 14² (8w);
- bottleneck: 2 EA modules at 7² (16w);
- transformer decoder: transposed conv 16w -> 8w, concat skip, 1x1 conv 16w -> 8w, 2 EA modules (14²);
  transposed conv 8w -> 4w, concat skip, 2 EA modules at width 8w (28²);
- CNN decoder: three [transposed conv, concat stem feature, DoubleConv] up to 224², 1x1 head w -> classes.
With 4 classes this has 79,075,064 parameters, as the release. One-channel input is repeated to 3 channels.

The position embedding fixes the input at 224 x 224 (``img_size``). Another size (a multiple of 32) is refused
unless ``interpolate_pos=True``, which resizes the 28 x 28 embedding grid bilinearly to the new token grid.
RecA (``attention="reca"``) acts on the local window self-attention of the encoder and bottleneck EA modules:
ISTS resets the state per encoder stage (encoder 1, encoder 2, bottleneck), STS runs one state through all six.
MT-UNet has no shifted windows, so ``align`` changes nothing here.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from salseg.errors import SalsegError
from salseg.nets.capabilities import Capabilities
from salseg.nets.mtunet_blocks import ConvBNReLU, DoubleConv, EAModule
from salseg.nets.registry import check_options, register_network
from salseg.nets.swin import check_attention_options, stage_states

DIVISOR = 32
REFERENCE_PARAMS = 79_075_064  # 4 classes, width 64, 224 x 224


class Stem(nn.Module):
    def __init__(self, cin: int, w: int, grid: tuple):
        super().__init__()
        self.model = nn.Module()
        self.model.res1, self.model.res2, self.model.res3 = DoubleConv(cin, w), DoubleConv(w, 2 * w), \
            DoubleConv(2 * w, 4 * w)
        self.trans_dim = ConvBNReLU(4 * w, 4 * w, 1, 1, 0)
        self.grid = tuple(grid)
        self.position_embedding = nn.Parameter(torch.zeros(1, grid[0] * grid[1], 4 * w))

    def forward(self, x, interpolate: bool, inject=None):
        features = []
        for res in (self.model.res1, self.model.res2, self.model.res3):
            x = res(x)
            if inject is not None and not features:  # the first level (module position "parallel")
                x = inject(x)
            features.append(x)
            x = F.max_pool2d(x, 2)
        x = self.trans_dim(x)
        size = tuple(x.shape[2:])
        pos = self.position_embedding
        if size != self.grid:
            if not interpolate:
                raise SalsegError(
                    f"mtunet is built for {self.grid[0] * 8} x {self.grid[1] * 8} inputs (its learned position "
                    f"embedding has {self.grid[0]} x {self.grid[1]} tokens), got {size[0] * 8} x {size[1] * 8}; "
                    f"use that size, build with img_size=[H, W], or pass interpolate_pos=True")
            c = pos.shape[-1]
            pos = F.interpolate(pos.transpose(1, 2).reshape(1, c, *self.grid), size=size, mode="bilinear",
                                align_corners=False).flatten(2).transpose(1, 2)
        return x.flatten(2).transpose(1, 2) + pos, size, features


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, depth: int, **ea):
        super().__init__()
        self.block = nn.ModuleList([EAModule(dim, **ea) for _ in range(depth)]
                                   + [ConvBNReLU(dim, 2 * dim, 2, stride=2, padding=0)])

    def forward(self, x, size, state):
        for blk in self.block[:-1]:
            x = blk(x, size, state)
        skip = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)
        return self.block[-1](skip), skip


class DecoderBlock(nn.Module):
    """Transposed conv to half width, concat the skip; ``squeeze`` adds a 1x1 conv back to half width."""

    def __init__(self, dim: int, squeeze: bool, depth: int, **ea):
        super().__init__()
        self.squeeze = squeeze
        mods = [nn.ConvTranspose2d(dim, dim // 2, 2, 2)]
        if squeeze:
            mods.append(nn.Conv2d(dim, dim // 2, 1))
        width = dim // 2 if squeeze else dim
        self.block = nn.ModuleList(mods + [EAModule(width, **ea) for _ in range(depth)])

    def forward(self, x, skip):
        x = torch.cat([self.block[0](x), skip], 1)
        start = 1
        if self.squeeze:
            x, start = self.block[1](x), 2
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        for blk in self.block[start:]:
            x = blk(x, (h, w))
        return x.transpose(1, 2).reshape(b, c, h, w)


class MTUNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 64, heads: int = 8, window: int = 4,
                 slots: int = 64, depth: int = 2, img_size: Sequence[int] = (224, 224), interpolate_pos: bool = False,
                 attention: str = "none", strategy: str = "ists", align: bool = False):
        super().__init__()
        check_attention_options(attention, strategy, align)
        w = int(width)
        if w < 1 or (4 * w) % int(heads):
            raise SalsegError(f"mtunet width {width} must be positive with 4 * width divisible by heads ({heads})")
        size = tuple(int(s) for s in (img_size if not isinstance(img_size, int) else (img_size, img_size)))
        if len(size) != 2 or any(s % DIVISOR or s <= 0 for s in size):
            raise SalsegError(f"mtunet img_size must be two positive multiples of {DIVISOR}, got {img_size!r}")
        self.attention, self.strategy, self.align = attention, strategy, bool(align)
        self.interpolate_pos = bool(interpolate_pos)
        self.repeat_gray = in_channels == 1
        ea = {"heads": int(heads), "win": int(window), "slots": int(slots)}
        self.stem = Stem(3 if self.repeat_gray else in_channels, w, (size[0] // 8, size[1] // 8))
        self.encoder = nn.ModuleList([EncoderBlock(4 * w, depth, **ea), EncoderBlock(8 * w, depth, **ea)])
        self.bottleneck = nn.ModuleList([EAModule(16 * w, **ea) for _ in range(depth)])
        self.decoder = nn.ModuleList([DecoderBlock(16 * w, True, depth, **ea), DecoderBlock(8 * w, False, depth, **ea)])
        self.decoder_stem = nn.Module()
        self.decoder_stem.block = nn.Module()
        d = self.decoder_stem.block
        d.trans1, d.res1 = nn.ConvTranspose2d(8 * w, 4 * w, 2, 2), DoubleConv(8 * w, 4 * w)
        d.trans2, d.res2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, 2), DoubleConv(4 * w, 2 * w)
        d.trans3, d.res3 = nn.ConvTranspose2d(2 * w, w, 2, 2), DoubleConv(2 * w, w)
        self.SegmentationHead = nn.Conv2d(w, num_classes, 1)

    @property
    def capabilities(self) -> Capabilities:
        """Sizes multiple of 32; an encoder/decoder for every module position; no deep supervision."""
        return Capabilities(divisor=(DIVISOR, DIVISOR), encoder_decoder=True)

    @property
    def encoder_channels(self) -> list[int]:
        """Channels of each ``encode`` level: stem (w, 2w, 4w), transformer skips (4w, 8w), bottleneck 16w."""
        w = self.SegmentationHead.in_channels
        return [w, 2 * w, 4 * w, 4 * w, 8 * w, 16 * w]

    def encode(self, x: torch.Tensor, inject=None) -> list[torch.Tensor]:
        """Encoder features (B, C, H, W), shallowest first: the three stem levels (1, 1/2, 1/4), the two transformer
        skips (1/8, 1/16) and the bottleneck (1/32). ``inject(f0) -> f0'`` replaces the first stem level's output
        before the deeper levels are computed (module position "parallel")."""
        if x.ndim != 4 or any(s % DIVISOR for s in x.shape[2:]):
            raise SalsegError(f"mtunet needs (B, C, H, W) input with H and W multiples of {DIVISOR} "
                              f"(224 x 224 by default), got shape {tuple(x.shape)}")
        if self.repeat_gray and x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x, size, features = self.stem(x, self.interpolate_pos, inject)
        states = stage_states(len(self.encoder) + 1, self.attention, self.strategy, self.align)
        skips = []
        for enc, state in zip(self.encoder, states):
            x, skip = enc(x, size, state)
            skips.append(skip)
            size = tuple(x.shape[2:])
            x = x.flatten(2).transpose(1, 2)
        for blk in self.bottleneck:
            x = blk(x, size, states[-1])
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)
        return [*features, *skips, x]

    def decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Logits from ``encode``'s features."""
        features, skips, x = feats[:3], feats[3:-1], feats[-1]
        for i, dec in enumerate(self.decoder):
            x = dec(x, skips[len(self.decoder) - 1 - i])
        d = self.decoder_stem.block
        x = d.res1(torch.cat([features[2], d.trans1(x)], 1))
        x = d.res2(torch.cat([features[1], d.trans2(x)], 1))
        x = d.res3(torch.cat([features[0], d.trans3(x)], 1))
        return self.SegmentationHead(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@register_network("mtunet", dims=(2,), fixed_size=(224, 224), divisor=DIVISOR, has_self_attention=True,
                  recipe={"optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-4, "batch_size": 8,
                          "patch_size": [224, 224]})
def mtunet(in_channels: int, num_classes: int, dim: int = 2, plans: dict | None = None, *,
           deep_supervision: bool = False, **options) -> nn.Module:
    """MT-UNet (released ACDC baseline): 224 x 224 input, 79,075,064 parameters for 4 classes."""
    del plans, deep_supervision  # no deep supervision in MT-UNet
    if dim != 2:
        raise SalsegError(f"mtunet is 2D only (asked for {dim}D)")
    known = {"width", "heads", "window", "slots", "depth", "img_size", "interpolate_pos", "attention", "strategy",
             "align"}
    check_options("mtunet", options, known)
    return MTUNet(in_channels, num_classes, **options)
