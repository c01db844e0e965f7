"""``stack``: the context baseline. The same K neighbouring slices a slice module gets (default 3, clamped at the
volume's ends by the sampler and the predictor) enter the UNCHANGED 2D network as K x C input channels:
``(B, K, C, H, W) -> (B, K*C, H, W) -> backbone`` (slice k's channel c is input channel ``k*C + c``).

It is the cheapest way to use the neighbours (the 2.5D recipe nnU-Net's authors suggest), so a slice module's gain
over ``stack`` is what its particular way of using them adds. The backbone is built by the network's own factory with
``in_channels = K*C`` and the run's ``deep_supervision``, so the only parameters that differ from ``none`` are the
first convolution's extra input channels. Option ``k`` (odd, default 3).

Volume inference: ``encode_slices`` keeps the slices themselves and ``decode_from_cache`` runs the backbone on each
window's stacked slices, so ``predict_volume_amortized`` (and the predictor's fast path) treat it like any slice model.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from salseg.errors import ConfigError, SalsegError
from salseg.nets.capabilities import Capabilities
from salseg.nets.modules.slice_model import backbone_ds_scales, slice_capabilities
from salseg.nets.registry import ModuleEntry, register_module

DEFAULT_K = 3


def attach_stack(entry: ModuleEntry, backbone: Callable[..., nn.Module], *, in_channels: int, num_classes: int,
                 position: str = "head", level: int | None = None, **options) -> nn.Module:
    """The 2D network built for K x C input channels, fed the K slices stacked (no position of its own: the
    registry allows only ``head``)."""
    del position, level
    k = int(entry.build(**options)["k"])
    return StackModel(backbone(k * in_channels, num_classes, 2), k=k, in_channels=in_channels,
                      num_classes=num_classes)


@register_module("stack", kind="stack", options=("k",), attach=attach_stack,
                 description="context baseline: K neighbouring slices as K x C input channels of the 2D network")
def stack(k=DEFAULT_K) -> dict:
    """Validated options of the stack module: ``{"k": K}``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ConfigError(f"stack option k={k!r} must be an odd integer >= 1 (the centre slice and as many "
                          f"neighbours on each side)")
    return {"k": int(k)}


class StackModel(nn.Module):
    position = "head"  # no placement of its own; "head" is the default every result folder assumes

    def __init__(self, backbone: nn.Module, *, k: int = DEFAULT_K, in_channels: int, num_classes: int):
        super().__init__()
        if k < 1 or k % 2 == 0:
            raise SalsegError(f"slice models need an odd number of neighbouring slices, got K={k}")
        self.backbone, self.k = backbone, int(k)
        self.in_channels, self.num_classes = int(in_channels), int(num_classes)
        self.deep_supervision_scales = backbone_ds_scales(backbone)

    @property
    def capabilities(self) -> Capabilities:
        """A slice model of K slices with the backbone's divisor and deep-supervision outputs."""
        return slice_capabilities(self, self.backbone)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.k or x.shape[2] != self.in_channels:
            raise SalsegError(f"stack model expects input (B, K={self.k}, C={self.in_channels}, H, W) (K "
                              f"neighbouring slices), got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor):
        self._check(x)
        return self.backbone(x.flatten(1, 2))

    def encode_slices(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-slice cache for volume inference: the slices themselves (no per-slice work)."""
        return [x]

    def decode_from_cache(self, cache: Sequence[torch.Tensor], index: torch.Tensor):
        """Logits of the windows whose K slices are ``cache[0][index[b, j]]`` (index (B, K))."""
        x = cache[0]
        return self.backbone(x[index.reshape(-1)].unflatten(0, tuple(index.shape)).flatten(1, 2))

    def extra_repr(self) -> str:
        return f"k={self.k}, in_channels={self.in_channels} (backbone input {self.k * self.in_channels})"
