"""0.5 cross-entropy + 0.5 soft Dice (nnU-Net's DC_and_CE with batch Dice over foreground classes), deep supervision;
for region datasets 0.5 BCE + 0.5 soft Dice per region (sigmoid, nnU-Net's DC_and_BCE).

Targets are class indices (B, 1, *spatial) or (B, *spatial); negative values (outside the crop / padding) count as
background. With an ignore label (its index ``ignore``, salseg.train.targets) those voxels contribute nothing: CE/BCE
average over the other voxels, Dice sums only over them, so their gradient is exactly zero. Deep supervision: output
i (1/2^i resolution) gets weight 1/2^i, weights normalised to sum 1; the index map is downsampled by nearest
neighbour to each output's size and the targets are built there.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from salseg.dataset.labels import LabelSpec
from salseg.train.targets import ignore_index, region_indices, region_targets, valid_mask


def _indices(target: torch.Tensor, spatial_ndim: int) -> torch.Tensor:
    if target.ndim == spatial_ndim + 2:
        target = target[:, 0]
    return target.long().clamp_min(0)


def _batch_dice(probs: torch.Tensor, onehot: torch.Tensor, mask: torch.Tensor | None, smooth: float) -> torch.Tensor:
    """Per-channel batch soft Dice of (B, K, *spatial) probabilities and targets, over the voxels of ``mask``."""
    if mask is not None:
        m = mask[:, None].to(probs.dtype)
        probs, onehot = probs * m, onehot * m
    axes = [0] + list(range(2, probs.ndim))
    inter = (probs * onehot).sum(axes)
    denom = probs.sum(axes) + onehot.sum(axes)
    return (2 * inter + smooth) / (denom + smooth).clamp_min(1e-8)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5,
                   ignore: int | None = None) -> torch.Tensor:
    """1 - mean over foreground classes of the batch soft Dice (softmax probabilities vs one-hot target)."""
    nd = logits.ndim - 2
    t = _indices(target, nd)
    mask = valid_mask(t, ignore)
    if mask is not None:
        t = torch.where(mask, t, torch.zeros_like(t))
    probs = torch.softmax(logits.float(), 1)
    onehot = F.one_hot(t, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    dice = _batch_dice(probs, onehot, mask, smooth)
    fg = dice[1:] if logits.shape[1] > 1 else dice
    return 1 - fg.mean()


class DiceCELoss(nn.Module):
    """0.5 CE + 0.5 soft Dice over classes; voxels with index ``ignore`` contribute nothing."""

    def __init__(self, weight_ce: float = 0.5, weight_dice: float = 0.5, ignore: int | None = None):
        super().__init__()
        self.weight_ce, self.weight_dice, self.ignore = weight_ce, weight_dice, ignore

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = _indices(target, logits.ndim - 2)
        if self.ignore is None:
            ce = F.cross_entropy(logits.float(), t)
        else:
            ce = _masked_mean(F.cross_entropy(logits.float(), torch.where(t == self.ignore, 0, t), reduction="none"),
                              t != self.ignore)
        return self.weight_ce * ce + self.weight_dice * soft_dice_loss(logits, t, ignore=self.ignore)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (0 with a zero gradient when the mask is empty)."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


class RegionDiceBCELoss(nn.Module):
    """0.5 BCE + 0.5 soft Dice per region on sigmoid outputs (one channel per region); ``ignore`` as above."""

    def __init__(self, regions: Sequence[Sequence[int]], weight_ce: float = 0.5, weight_dice: float = 0.5,
                 ignore: int | None = None, smooth: float = 1e-5):
        super().__init__()
        self.regions = [list(r) for r in regions]
        self.weight_ce, self.weight_dice, self.ignore, self.smooth = weight_ce, weight_dice, ignore, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != len(self.regions):
            raise ValueError(f"{logits.shape[1]} output channels for {len(self.regions)} regions")
        seg = target if target.ndim == logits.ndim else target[:, None]
        seg = seg.long()
        mask = valid_mask(seg[:, 0], self.ignore)
        t = region_targets(seg.clamp_min(0), self.regions)
        bce = F.binary_cross_entropy_with_logits(logits.float(), t, reduction="none")
        bce = bce.mean() if mask is None else _masked_mean(bce, mask[:, None].expand_as(bce))
        dice = _batch_dice(torch.sigmoid(logits.float()), t, mask, self.smooth)
        return self.weight_ce * bce + self.weight_dice * (1 - dice.mean())


def make_loss(spec: LabelSpec) -> nn.Module:
    """The training loss of a dataset: CE + Dice over classes, or BCE + Dice per region; deep supervision on."""
    ignore = ignore_index(spec)
    if spec.has_regions:
        return DeepSupervisionLoss(RegionDiceBCELoss(region_indices(spec), ignore=ignore))
    return DeepSupervisionLoss(DiceCELoss(ignore=ignore))


def deep_supervision_weights(n: int) -> list[float]:
    w = [1 / 2 ** i for i in range(n)]
    s = sum(w)
    return [x / s for x in w]


def downsample_target(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of an index map (B, 1, *spatial) to ``size``."""
    if tuple(target.shape[2:]) == tuple(size):
        return target
    return F.interpolate(target.float(), size=tuple(size), mode="nearest").long()


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of ``loss`` over a list of outputs (highest resolution first); a single tensor passes through."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, outputs, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == outputs_ndim(outputs) - 1:
            target = target[:, None]
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        weights = deep_supervision_weights(len(outputs))
        total = 0.0
        for w, out in zip(weights, outputs):
            total = total + w * self.loss(out, downsample_target(target, out.shape[2:]))
        return total


def outputs_ndim(outputs) -> int:
    return (outputs if isinstance(outputs, torch.Tensor) else outputs[0]).ndim


def describe_loss(diffusion: bool = False, spec: LabelSpec | None = None) -> dict:
    """The training loss as data (for the protocol fingerprint): what :func:`make_loss` computes."""
    if diffusion:
        return {"name": "network training_loss (diffusion)"}
    ref = DiceCELoss()
    d = {"name": "ce+soft_dice", "weight_ce": ref.weight_ce, "weight_dice": ref.weight_dice,
         "dice": "batch, foreground classes", "deep_supervision_weights": "1/2^i, normalised"}
    if spec is not None and spec.has_regions:
        d.update(name="bce+soft_dice", dice="batch, per region (sigmoid)", regions=[list(r) for r in spec.regions])
    if spec is not None and spec.ignore is not None:
        d["ignore_label"] = int(spec.ignore)
    return d
