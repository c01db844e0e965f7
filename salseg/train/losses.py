"""0.5 cross-entropy + 0.5 soft Dice (nnU-Net's DC_and_CE with batch Dice over foreground classes), deep supervision.

Targets are class indices (B, 1, *spatial) or (B, *spatial); negative values (outside the crop / padding) count as
background. Deep supervision: output i (1/2^i resolution) gets weight 1/2^i, weights normalised to sum 1; the target
is downsampled by nearest neighbour to each output's size.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _indices(target: torch.Tensor, spatial_ndim: int) -> torch.Tensor:
    if target.ndim == spatial_ndim + 2:
        target = target[:, 0]
    return target.long().clamp_min(0)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """1 - mean over foreground classes of the batch soft Dice (softmax probabilities vs one-hot target)."""
    nd = logits.ndim - 2
    t = _indices(target, nd)
    probs = torch.softmax(logits.float(), 1)
    onehot = F.one_hot(t, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    axes = [0] + list(range(2, logits.ndim))
    inter = (probs * onehot).sum(axes)
    denom = probs.sum(axes) + onehot.sum(axes)
    dice = (2 * inter + smooth) / (denom + smooth).clamp_min(1e-8)
    fg = dice[1:] if logits.shape[1] > 1 else dice
    return 1 - fg.mean()


class DiceCELoss(nn.Module):
    def __init__(self, weight_ce: float = 0.5, weight_dice: float = 0.5):
        super().__init__()
        self.weight_ce, self.weight_dice = weight_ce, weight_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = _indices(target, logits.ndim - 2)
        ce = F.cross_entropy(logits.float(), t)
        return self.weight_ce * ce + self.weight_dice * soft_dice_loss(logits, t)


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


def describe_loss(diffusion: bool = False) -> dict:
    """The training loss as data (for the protocol fingerprint): what ``DiceCELoss`` + deep supervision compute."""
    if diffusion:
        return {"name": "network training_loss (diffusion)"}
    ref = DiceCELoss()
    return {"name": "ce+soft_dice", "weight_ce": ref.weight_ce, "weight_dice": ref.weight_dice,
            "dice": "batch, foreground classes", "deep_supervision_weights": "1/2^i, normalised"}
