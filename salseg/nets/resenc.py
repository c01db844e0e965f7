"""``resenc``: nnU-Net's residual-encoder U-Net (the ResEnc M / L / XL presets' network), 2D and 3D.

Built from a plans configuration like ``unet`` (same pooling / conv kernels / features per stage), with:

- a stem: one conv-InstanceNorm-LeakyReLU block (input channels -> features of stage 0, stride 1);
- encoder stage ``s``: ``n_blocks_per_stage[s]`` residual basic blocks (ResNet-D style), the first one strided.
  A block is ``act(norm(conv(act(norm(conv(x))))) + skip(x))``; the skip is the identity, or average pooling
  (kernel = stride) when the block is strided, followed by a bias-free 1x1 conv + InstanceNorm when the channel
  count changes. Default block counts: nnU-Net's ResEnc planners' ``(1, 3, 4, 6, 6, 6, 6, ...)``;
- the plain decoder of ``unet`` with ``n_conv_per_stage_decoder`` conv blocks per stage (one, as nnU-Net's ResEnc);
- He initialisation (LeakyReLU slope 0.01), and each block's last InstanceNorm starts at weight 0 and bias 0 so the
  blocks start as their skip (nnU-Net's ``init_last_bn_before_add_to_0``).

Parameters: exactly nnU-Net's ``ResidualEncoderUNet`` for the same plans minus its deepest deep-supervision head,
which nnU-Net builds and weights 0 in its loss (``unet`` leaves it out too; docs/modules.md). ``encode`` / ``decode``
/ ``encoder_channels`` / ``divisor`` / ``deep_supervision_scales`` are ``unet``'s, so every slice-module position
and the ``stack`` baseline work on it unchanged.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from salseg.errors import ConfigError
from salseg.nets.blocks import ConvNormAct, init_kaiming
from salseg.nets.registry import check_options, register_network
from salseg.nets.unet import DEFAULT_WIDTH, MAX_FEATURES, PlainConvUNet, _features, unet_topology

# nnU-Net's ResEnc planners: residual blocks per encoder stage (sliced to the number of stages), decoder convs
RESENC_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
RESENC_DECODER_CONVS = 1
KNOWN_OPTIONS = ("width", "max_features", "patch_size", "deep_supervision", "blocks_per_stage")


def _avg_pool(dim: int):
    return {2: nn.AvgPool2d, 3: nn.AvgPool3d}[dim]


class BasicBlock(nn.Module):
    """Residual basic block (ResNet-D): two convs (the second without activation) + skip, then LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, *, dim: int):
        super().__init__()
        stride = [int(s) for s in (stride if isinstance(stride, (list, tuple)) else [stride] * dim)]
        self.conv1 = ConvNormAct(in_channels, out_channels, kernel_size, stride, dim=dim)
        self.conv2 = ConvNormAct(out_channels, out_channels, kernel_size, 1, dim=dim, act=None)
        skip = []
        if any(s != 1 for s in stride):
            skip.append(_avg_pool(dim)(tuple(stride), tuple(stride)))
        if in_channels != out_channels:
            skip.append(ConvNormAct(in_channels, out_channels, 1, 1, dim=dim, act=None, bias=False))
        self.skip = nn.Sequential(*skip)  # empty Sequential = identity
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x):
        return self.act(self.conv2(self.conv1(x)) + self.skip(x))


class ResidualEncoderUNet(PlainConvUNet):
    """``unet``'s decoder on a residual encoder; ``encoder[0]`` holds the stem and stage 0."""

    display_name = "resenc"

    def __init__(self, in_channels: int, num_classes: int, dim: int, pool_op_kernel_sizes, conv_kernel_sizes,
                 features_per_stage, n_blocks_per_stage, *, n_conv_per_stage_decoder: Sequence[int] | int = 1,
                 deep_supervision: bool = True):
        n = len(features_per_stage)
        blocks = [int(b) for b in n_blocks_per_stage]
        dec = ([int(n_conv_per_stage_decoder)] * (n - 1) if isinstance(n_conv_per_stage_decoder, int)
               else [int(c) for c in n_conv_per_stage_decoder])
        if len(blocks) != n or any(b < 1 for b in blocks):
            raise ConfigError(f"resenc: n_blocks_per_stage {blocks} must hold one positive count per stage ({n})")
        if len(dec) != n - 1 or len(set(dec)) != 1 or dec[0] < 1:
            raise ConfigError(f"resenc: n_conv_per_stage_decoder {dec} must hold {n - 1} equal positive counts")
        super().__init__(in_channels, num_classes, dim, pool_op_kernel_sizes, conv_kernel_sizes, features_per_stage,
                         deep_supervision=deep_supervision, convs_per_stage=dec[0])
        self.n_blocks_per_stage, self.n_conv_per_stage_decoder = blocks, dec
        stages = []
        for s in range(n):
            cin = self.features[s - 1] if s else self.features[0]
            stage = [BasicBlock(cin if b == 0 else self.features[s], self.features[s], conv_kernel_sizes[s],
                                self.strides[s] if b == 0 else 1, dim=dim) for b in range(blocks[s])]
            if s == 0:
                stage.insert(0, ConvNormAct(in_channels, self.features[0], conv_kernel_sizes[0], 1, dim=dim))
            stages.append(nn.Sequential(*stage))
        self.encoder = nn.ModuleList(stages)  # replaces the plain encoder the parent built
        self.apply(init_kaiming)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.conv2.norm.weight)
                nn.init.zeros_(m.conv2.norm.bias)


def _per_stage(value, dim: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [int(value)] * dim


@register_network("resenc", dims=(2, 3), divisor=1, has_self_attention=False,
                  recipe={"optimizer": "sgd", "lr": 0.01, "momentum": 0.99, "weight_decay": 3e-5, "nesterov": True},
                  description="nnU-Net residual-encoder U-Net (ResEnc M/L/XL presets), 2D/3D")
def resenc(in_channels: int, num_classes: int, dim: int, plans: dict | None, *, width: int | None = None,
           max_features: int | None = None, patch_size=None, deep_supervision: bool = True, blocks_per_stage=None,
           **options) -> ResidualEncoderUNet:
    """Residual-encoder U-Net. ``plans`` = one configuration of plans.json or None (as ``unet``).

    Options: ``width`` / ``max_features`` (as unet), ``patch_size`` (topology without plans), ``deep_supervision``,
    ``blocks_per_stage`` (residual blocks per encoder stage; default: the plans' ``n_blocks_per_stage``, else
    nnU-Net's ``(1, 3, 4, 6, 6, 6, ...)``).
    """
    check_options("resenc", options, KNOWN_OPTIONS)  # the known ones are keywords; named in the message
    if dim not in (2, 3):
        raise ConfigError(f"resenc is 2D or 3D, not {dim}D")
    plans = plans or {}
    pools, kernels = plans.get("pool_op_kernel_sizes"), plans.get("conv_kernel_sizes")
    if pools is None or kernels is None:
        pools, kernels = unet_topology(patch_size or plans.get("patch_size"), dim)
    pools = [_per_stage(p, dim) for p in pools]
    kernels = [_per_stage(k, dim) for k in kernels]
    if len(pools) == len(kernels) - 1:
        pools = [[1] * dim] + pools
    for name, seq in (("pool_op_kernel_sizes", pools), ("conv_kernel_sizes", kernels)):
        if any(len(p) != dim for p in seq):
            raise ConfigError(f"plans field {name} = {seq} does not have {dim} values per stage ({dim}D config)")
    n = len(pools)
    features = plans.get("features_per_stage")
    if width is not None or max_features is not None or not features:
        features = _features(n, int(width or DEFAULT_WIDTH), int(max_features or MAX_FEATURES[dim]))
    blocks = blocks_per_stage or plans.get("n_blocks_per_stage") or RESENC_BLOCKS
    blocks = [int(b) for b in (blocks if isinstance(blocks, (list, tuple)) else [blocks] * n)]
    if len(blocks) < n:  # a shorter list continues with nnU-Net's pattern (plans made for fewer stages)
        blocks += list(RESENC_BLOCKS[len(blocks):n])
    decoder = plans.get("n_conv_per_stage_decoder") or RESENC_DECODER_CONVS
    if isinstance(decoder, (list, tuple)):
        decoder = (list(decoder) + [decoder[-1]] * n)[:n - 1] if decoder else RESENC_DECODER_CONVS
    return ResidualEncoderUNet(in_channels, num_classes, dim, pools, kernels, features, blocks[:n],
                               n_conv_per_stage_decoder=decoder,
                               deep_supervision=bool(deep_supervision))
