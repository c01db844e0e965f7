"""A 2D backbone with a slice-recurrent head: (B, K, C, H, W) neighbouring slices -> centre-slice logits.

The backbone (its segmentation head replaced by a 1x1 conv to ``features`` channels, no activation) is called ONCE
on all B*K slices, so the K slices share its weights. ``features`` and ``head_logits`` are exposed separately so an
inference loop can compute each slice's features once per volume and reuse them for the three centres that need
them. Edge slices: the caller supplies the clamped neighbour (the nearest existing slice), see spec/modules.md §1.

Deep supervision: when the backbone was built with it (its declared ``deep_supervision_scales`` list more than one
output, salseg.nets.capabilities), training mode returns ``[head logits (full resolution), backbone outputs of the
centre slice at 1/2, 1/4, ...]``; the backbone's deeper segmentation heads predict the classes
(``retarget_deep_supervision``, or 1x1 adapters for a backbone that cannot), only its full-resolution head gives the
``features`` channels. Eval mode returns the head logits alone, as without deep supervision.
"""

from __future__ import annotations

import torch
from torch import nn

from salseg.errors import SalsegError
from salseg.nets.capabilities import Capabilities, as_scales, capabilities_of


def slice_capabilities(model: nn.Module, backbone: nn.Module) -> Capabilities:
    """A slice model's capabilities: its K and position, the per-slice cache (``encode_slices`` /
    ``decode_from_cache``), its deep-supervision outputs, and the backbone's input-size divisor."""
    return Capabilities(slice_k=model.k, position=model.position, slice_cache=True,
                        divisor=capabilities_of(backbone).divisor,
                        deep_supervision_scales=as_scales(model.deep_supervision_scales))


def top_level(out):
    """The full-resolution output of a network that may return a deep-supervision list."""
    return out[0] if isinstance(out, (list, tuple)) else out


def backbone_ds_scales(backbone: nn.Module, dim: int = 2) -> list[list[float]]:
    """The backbone's declared ``deep_supervision_scales`` (one full-resolution output when it has none)."""
    return capabilities_of(backbone).scales(dim)


class SliceRecurrentModel(nn.Module):
    position = "head"  # module position (salseg.nets.modules.positions)

    def __init__(self, backbone: nn.Module, head: nn.Module, k: int = 3, num_classes: int | None = None,
                 features: int | None = None):
        """``num_classes`` and ``features`` (the head's input width) default to the head's own attributes."""
        super().__init__()
        if k < 1 or k % 2 == 0:
            raise SalsegError(f"slice models need an odd number of neighbouring slices, got K={k}")
        self.backbone, self.head, self.k = backbone, head, int(k)
        self.num_classes = int(head.num_classes if num_classes is None else num_classes)
        scales = backbone_ds_scales(backbone)
        self.ds_adapters = None
        if len(scales) > 1:
            if capabilities_of(backbone).retarget_deep_supervision:
                backbone.retarget_deep_supervision(self.num_classes)  # deeper heads -> classes
            else:  # a backbone whose deeper outputs have `features` channels: 1x1 convs to the classes
                width = int(head.features if features is None else features)
                self.ds_adapters = nn.ModuleList(nn.Conv2d(width, self.num_classes, 1) for _ in scales[1:])
        self.deep_supervision_scales = scales  # the head's output is the full-resolution level

    @property
    def capabilities(self) -> Capabilities:
        return slice_capabilities(self, self.backbone)

    def _backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.backbone(x)
        if isinstance(out, (list, tuple)):
            return out[0], list(out[1:])
        return out, []

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-slice features: (N, C, H, W) -> (N, features, H, W)."""
        return self._backbone(x)[0]

    def head_logits(self, f_prev: torch.Tensor, f_mid: torch.Tensor, f_next: torch.Tensor) -> torch.Tensor:
        """Centre logits (B, classes, H, W) from the three slices' features (each (B, features, H, W))."""
        return self.head(torch.stack([f_prev, f_mid, f_next], dim=1))

    def encode_slices(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-slice cache for volume inference (salseg.nets.modules.positions): the backbone features."""
        return [self.features(x)]

    def decode_from_cache(self, cache, index: torch.Tensor) -> torch.Tensor:
        """Logits of the windows whose K slices are ``cache[0][index[b, j]]`` (index (B, K))."""
        f = cache[0]
        return self.head(f[index.reshape(-1)].unflatten(0, tuple(index.shape)))

    def forward(self, x: torch.Tensor):
        if x.ndim != 5 or x.shape[1] != self.k:
            raise SalsegError(f"slice model expects input (B, K={self.k}, C, H, W) (K neighbouring slices), "
                              f"got shape {tuple(x.shape)}")
        b, k = x.shape[:2]
        f, deeper = self._backbone(x.reshape(b * k, *x.shape[2:]))
        logits = self.head(f.reshape(b, k, *f.shape[1:]))
        if not (self.training and deeper):
            return logits
        aux = [d.unflatten(0, (b, k))[:, k // 2] for d in deeper]  # the centre slice's lower-resolution outputs
        if self.ds_adapters is not None:
            aux = [conv(a) for conv, a in zip(self.ds_adapters, aux)]
        return [logits, *aux]
