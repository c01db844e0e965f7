"""A 2D backbone with a slice-recurrent head: (B, K, C, H, W) neighbouring slices -> centre-slice logits.

The backbone (its segmentation head replaced by a 1x1 conv to ``features`` channels, no activation) is called ONCE
on all B*K slices, so the K slices share its weights. ``features`` and ``head_logits`` are exposed separately so an
inference loop can compute each slice's features once per volume and reuse them for the three centres that need
them. Edge slices: the caller supplies the clamped neighbour (the nearest existing slice), see spec/modules.md §1.
"""

from __future__ import annotations

import torch
from torch import nn

from salseg.errors import SalsegError


class SliceRecurrentModel(nn.Module):
    is_slice_model = True
    position = "head"  # module position (salseg.nets.modules.positions)

    def __init__(self, backbone: nn.Module, head: nn.Module, k: int = 3):
        super().__init__()
        if k < 1 or k % 2 == 0:
            raise SalsegError(f"slice models need an odd number of neighbouring slices, got K={k}")
        self.backbone, self.head, self.k = backbone, head, int(k)
        self.num_classes = getattr(head, "num_classes", None)
        self.deep_supervision_scales = [[1.0, 1.0]]  # one output at full resolution

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-slice features: (N, C, H, W) -> (N, features, H, W)."""
        out = self.backbone(x)
        if isinstance(out, (list, tuple)):  # a backbone that ignores deep_supervision=False
            out = out[0]
        return out

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.k:
            raise SalsegError(f"slice model expects input (B, K={self.k}, C, H, W) (K neighbouring slices), "
                              f"got shape {tuple(x.shape)}")
        b, k = x.shape[:2]
        f = self.features(x.reshape(b * k, *x.shape[2:]))
        return self.head(f.reshape(b, k, *f.shape[1:]))
