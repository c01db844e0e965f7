"""``unet``: the plans-driven plain convolutional U-Net of nnU-Net, 2D and 3D.

Encoder: one stage per entry of ``pool_op_kernel_sizes`` (nnU-Net v2 convention: entry 0 is the stride of the first
stage, normally all ones); each stage = strided conv block + further conv blocks (conv-InstanceNorm-LeakyReLU, two per
stage). Decoder: transposed conv (kernel = stride), concatenation with the skip, two conv blocks, and a 1x1 conv head.
Deep supervision (training mode only): a list of logits ``[full, 1/2, 1/4, ...]``, leaving out the lowest decoder
resolution (nnU-Net gives that one weight 0 anyway); ``model.deep_supervision_scales`` lists each output's per-axis
scale relative to the input so a trainer can downsample targets.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from salseg.errors import ConfigError, SalsegError
from salseg.nets.blocks import StackedConvs, conv_nd, conv_transpose_nd, init_kaiming
from salseg.nets.capabilities import Capabilities, as_scales
from salseg.nets.registry import check_options, register_network

DEFAULT_WIDTH = 32
MAX_FEATURES = {2: 512, 3: 320}
MAX_STAGES = {2: 7, 3: 6}
MIN_FEATURE_MAP = 4
UNET_OPTIONS = ("width", "deep_supervision", "max_features", "patch_size")


def unet_topology(patch_size: Sequence[int] | None, dim: int, spacing: Sequence[float] | None = None,
                  max_stages: int | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """(pool_op_kernel_sizes, conv_kernel_sizes) for a patch, nnU-Net style.

    An axis is halved at a stage while its current size is even and stays >= 4 after halving, and (with ``spacing``)
    while its current spacing is at most twice the finest one; an axis still more than twice as coarse as the finest
    gets a conv kernel of 1 at that stage. No patch size: 5 stages, pooling 2 on every axis.
    """
    max_stages = max_stages or MAX_STAGES[dim]
    if patch_size is None:
        return [[1] * dim] + [[2] * dim for _ in range(4)], [[3] * dim for _ in range(5)]
    size = [int(s) for s in patch_size]
    if len(size) != dim:
        raise ConfigError(f"patch_size {list(patch_size)} has {len(size)} axes; a {dim}D U-Net needs {dim}")
    sp = [float(s) for s in spacing] if spacing is not None else [1.0] * dim
    pools, kernels = [[1] * dim], [[3 if sp[a] <= 2 * min(sp) else 1 for a in range(dim)]]
    while len(pools) < max_stages:
        finest = min(sp)
        stride = [2 if (size[a] % 2 == 0 and size[a] // 2 >= MIN_FEATURE_MAP and sp[a] <= 2 * finest) else 1
                  for a in range(dim)]
        if not any(s == 2 for s in stride):
            break
        size = [s // st for s, st in zip(size, stride)]
        sp = [s * st for s, st in zip(sp, stride)]
        pools.append(stride)
        kernels.append([3 if sp[a] <= 2 * min(sp) else 1 for a in range(dim)])
    return pools, kernels


def _features(n_stages: int, width: int, cap: int) -> list[int]:
    return [min(width * 2 ** i, cap) for i in range(n_stages)]


class PlainConvUNet(nn.Module):
    display_name = "unet"  # the registry name used in error messages (subclasses override it)

    def __init__(self, in_channels: int, num_classes: int, dim: int, pool_op_kernel_sizes, conv_kernel_sizes,
                 features_per_stage, *, deep_supervision: bool = True, convs_per_stage: int = 2):
        super().__init__()
        n = len(features_per_stage)
        if not (len(pool_op_kernel_sizes) == len(conv_kernel_sizes) == n) or n < 2:
            raise ConfigError(f"U-Net topology mismatch: {len(pool_op_kernel_sizes)} pool kernels, "
                              f"{len(conv_kernel_sizes)} conv kernels, {n} feature sizes (need equal counts >= 2)")
        self.dim, self.num_classes = dim, num_classes
        self.strides = [tuple(int(s) for s in p) for p in pool_op_kernel_sizes]
        self.features = [int(f) for f in features_per_stage]
        self.encoder = nn.ModuleList(
            StackedConvs(in_channels if s == 0 else self.features[s - 1], self.features[s], conv_kernel_sizes[s],
                         self.strides[s], convs_per_stage, dim=dim) for s in range(n))
        self.up = nn.ModuleList(
            conv_transpose_nd(dim)(self.features[s], self.features[s - 1], self.strides[s], self.strides[s])
            for s in range(n - 1, 0, -1))
        self.decoder = nn.ModuleList(
            StackedConvs(2 * self.features[s - 1], self.features[s - 1], conv_kernel_sizes[s - 1], 1,
                         convs_per_stage, dim=dim) for s in range(n - 1, 0, -1))
        self.deep_supervision = bool(deep_supervision)
        n_out = max(1, n - 2) if self.deep_supervision else 1
        # seg_layers[j] predicts at encoder stage j (0 = full resolution)
        self.seg_layers = nn.ModuleList(conv_nd(dim)(self.features[j], num_classes, 1) for j in range(n_out))
        self.deep_supervision_scales = [self._scale(j) for j in range(n_out)]
        self.apply(init_kaiming)

    def retarget_deep_supervision(self, num_classes: int) -> None:
        """Make the deeper deep-supervision heads (all but the full-resolution one) predict ``num_classes``: a
        slice model's backbone gives features at full resolution but class logits at the deeper levels."""
        for j in range(1, len(self.seg_layers)):
            conv = conv_nd(self.dim)(self.features[j], int(num_classes), 1)
            init_kaiming(conv)
            self.seg_layers[j] = conv

    def _scale(self, stage: int) -> list[float]:
        total = [1] * self.dim
        for s in range(stage + 1):
            total = [t * st for t, st in zip(total, self.strides[s])]
        return [1.0 / t for t in total]

    @property
    def capabilities(self) -> Capabilities:
        """Divisor and deep-supervision outputs as built; an encoder/decoder for every module position; deeper
        heads that a slice model can retarget to the classes."""
        return Capabilities(divisor=tuple(self.divisor),
                            deep_supervision_scales=as_scales(self.deep_supervision_scales),
                            encoder_decoder=True, retarget_deep_supervision=True)

    @property
    def divisor(self) -> list[int]:
        """Every input size must be a multiple of these (per axis)."""
        return [int(round(1 / s)) for s in self._scale(len(self.features) - 1)]

    @property
    def encoder_channels(self) -> list[int]:
        """Channels of each ``encode`` level, shallowest first (the last is the bottleneck)."""
        return list(self.features)

    def encode(self, x: torch.Tensor, inject=None) -> list[torch.Tensor]:
        """Encoder features, shallowest first, bottleneck last. ``inject(f0) -> f0'`` (optional) replaces the
        first level's features before the deeper levels are computed (the ``parallel`` module position)."""
        if x.ndim != self.dim + 2:
            raise SalsegError(f"{self.display_name} ({self.dim}D) expects input (B, C, {', '.join('ZYX'[3 - self.dim:])}), "
                              f"got shape {tuple(x.shape)}")
        bad = [(s, d) for s, d in zip(x.shape[2:], self.divisor) if s % d]
        if bad:
            raise SalsegError(f"{self.display_name} input size {tuple(x.shape[2:])} is not divisible by its total stride "
                              f"{tuple(self.divisor)}; choose a patch size that is a multiple of it")
        if all(s == d for s, d in zip(x.shape[2:], self.divisor)):
            raise SalsegError(f"{self.display_name} input size {tuple(x.shape[2:])} is too small for {len(self.features)} stages "
                              f"(the lowest stage would be 1 voxel); pass plans or a matching patch_size")
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x)
            if i == 0 and inject is not None:
                x = inject(x)
            skips.append(x)
        return skips

    def decode(self, skips: list[torch.Tensor]):
        """Logits from ``encode``'s features (a list of deep-supervision outputs in training mode)."""
        x = skips[-1]
        outputs = []
        n = len(self.features)
        for i, (up, dec) in enumerate(zip(self.up, self.decoder)):
            stage = n - 2 - i  # encoder stage whose resolution this decoder step restores
            x = dec(torch.cat([up(x), skips[stage]], dim=1))
            if stage < len(self.seg_layers) and (stage == 0 or (self.training and self.deep_supervision)):
                outputs.append(self.seg_layers[stage](x))
        if self.training and self.deep_supervision:
            return outputs[::-1]
        return outputs[-1]

    def forward(self, x: torch.Tensor):
        return self.decode(self.encode(x))


@register_network("unet", dims=(2, 3), divisor=1, has_self_attention=False,
                  recipe={"optimizer": "sgd", "lr": 0.01, "momentum": 0.99, "weight_decay": 3e-5, "nesterov": True},
                  description="plans-driven plain conv U-Net (nnU-Net), 2D/3D, conv-InstanceNorm-LeakyReLU")
def unet(in_channels: int, num_classes: int, dim: int, plans: dict | None, *, width: int | None = None,
         deep_supervision: bool = True, max_features: int | None = None, patch_size=None,
         **options) -> PlainConvUNet:
    """Plain conv U-Net. ``plans`` = one configuration of plans.json (pool/conv kernels, features) or None.

    ``width``: features of the first stage (features double per stage up to ``max_features``, default 512 in 2D and
    320 in 3D); when ``width`` and ``max_features`` are not given, the plans' ``features_per_stage`` are used.
    Without plans the topology comes from ``patch_size`` (see ``unet_topology``), else 5 stages of pooling 2.
    """
    check_options("unet", options, UNET_OPTIONS)
    if dim not in (2, 3):
        raise ConfigError(f"unet is 2D or 3D, not {dim}D")
    plans = plans or {}
    pools = plans.get("pool_op_kernel_sizes")
    kernels = plans.get("conv_kernel_sizes")
    if pools is None or kernels is None:
        pools, kernels = unet_topology(patch_size or plans.get("patch_size"), dim)
    pools = [list(p) if isinstance(p, (list, tuple)) else [int(p)] * dim for p in pools]
    kernels = [list(k) if isinstance(k, (list, tuple)) else [int(k)] * dim for k in kernels]
    if len(pools) == len(kernels) - 1:  # pooling given only between stages
        pools = [[1] * dim] + pools
    for name, seq in (("pool_op_kernel_sizes", pools), ("conv_kernel_sizes", kernels)):
        if any(len(p) != dim for p in seq):
            raise ConfigError(f"plans field {name} = {seq} does not have {dim} values per stage ({dim}D config)")
    features = plans.get("features_per_stage")
    if width is not None or max_features is not None or not features:
        features = _features(len(pools), int(width or DEFAULT_WIDTH), int(max_features or MAX_FEATURES[dim]))
    return PlainConvUNet(in_channels, num_classes, dim, pools, kernels, features, deep_supervision=deep_supervision)
