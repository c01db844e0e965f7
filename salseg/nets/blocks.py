"""Convolution blocks shared by several networks (written once, imported everywhere).

All helpers take ``dim`` (2 or 3) and pick the matching ``nn.Conv2d``/``nn.Conv3d`` etc. The default block is
nnU-Net's: convolution (with bias) -> InstanceNorm (affine, eps 1e-5) -> LeakyReLU(0.01).
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from salseg.errors import ConfigError


def _check_dim(dim: int) -> int:
    if dim not in (2, 3):
        raise ConfigError(f"dim must be 2 or 3, got {dim!r}")
    return int(dim)


def conv_nd(dim: int) -> type[nn.Module]:
    return {2: nn.Conv2d, 3: nn.Conv3d}[_check_dim(dim)]


def conv_transpose_nd(dim: int) -> type[nn.Module]:
    return {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[_check_dim(dim)]


def instance_norm_nd(dim: int) -> type[nn.Module]:
    return {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[_check_dim(dim)]


def batch_norm_nd(dim: int) -> type[nn.Module]:
    return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[_check_dim(dim)]


def as_tuple(value: int | Sequence[int], dim: int) -> tuple[int, ...]:
    """``3 -> (3, 3)`` for dim 2; a sequence is checked to have ``dim`` entries."""
    if isinstance(value, int):
        return (value,) * dim
    value = tuple(int(v) for v in value)
    if len(value) != dim:
        raise ConfigError(f"expected {dim} values (one per spatial axis), got {list(value)}")
    return value


def same_padding(kernel: Sequence[int]) -> tuple[int, ...]:
    return tuple((k - 1) // 2 for k in kernel)


class ConvNormAct(nn.Module):
    """conv(kernel, stride) -> norm -> activation. ``norm="instance"|"batch"|None``; ``act="leakyrelu"|"relu"|None``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3,
                 stride: int | Sequence[int] = 1, *, dim: int = 2, norm: str | None = "instance",
                 act: str | None = "leakyrelu", bias: bool = True):
        super().__init__()
        kernel = as_tuple(kernel_size, dim)
        self.conv = conv_nd(dim)(in_channels, out_channels, kernel, as_tuple(stride, dim), same_padding(kernel),
                                 bias=bias)
        if norm == "instance":
            self.norm = instance_norm_nd(dim)(out_channels, eps=1e-5, affine=True)
        elif norm == "batch":
            self.norm = batch_norm_nd(dim)(out_channels)
        elif norm is None:
            self.norm = nn.Identity()
        else:
            raise ConfigError(f"unknown norm {norm!r}; choose instance, batch or None")
        if act == "leakyrelu":
            self.act = nn.LeakyReLU(0.01, inplace=True)
        elif act == "relu":
            self.act = nn.ReLU(inplace=True)
        elif act is None:
            self.act = nn.Identity()
        else:
            raise ConfigError(f"unknown activation {act!r}; choose leakyrelu, relu or None")

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class StackedConvs(nn.Sequential):
    """``num_convs`` ConvNormAct blocks; the first one carries ``first_stride`` (strided-conv downsampling)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3,
                 first_stride: int | Sequence[int] = 1, num_convs: int = 2, *, dim: int = 2, **block_kw):
        blocks = [ConvNormAct(in_channels if i == 0 else out_channels, out_channels, kernel_size,
                              first_stride if i == 0 else 1, dim=dim, **block_kw) for i in range(num_convs)]
        super().__init__(*blocks)


def init_kaiming(module: nn.Module, neg_slope: float = 1e-2) -> None:
    """nnU-Net's He initialisation for conv weights (LeakyReLU slope ``neg_slope``), zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=neg_slope)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
