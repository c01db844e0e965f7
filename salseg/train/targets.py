"""Training targets from a preprocessed index map, for classes or regions, with the ignore label masked out.

A preprocessed seg holds class INDICES (positions in ``label_values``; -1 = background outside the crop or the
nonzero mask; ``len(label_values)`` = the ignore label, salseg.preprocess). For classes the target is that index
map; for regions it is one binary channel per region (voxels whose label value is one of the region's values).
Deep supervision downsamples the index map by nearest neighbour first and builds the targets at each level from it,
so every level sees the same ignore mask at its own resolution.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from salseg.dataset.labels import LabelSpec


def region_indices(spec: LabelSpec) -> list[list[int]]:
    """Per region, the class indices (positions in ``spec.label_values``) of its label values."""
    pos = {v: i for i, v in enumerate(spec.label_values)}
    return [[pos[v] for v in r] for r in spec.regions]


def ignore_index(spec: LabelSpec) -> int | None:
    """The index the ignore label has in a preprocessed seg (None without an ignore label)."""
    return len(spec.label_values) if spec.ignore is not None else None


def valid_mask(seg: torch.Tensor, ignore: int | None) -> torch.Tensor | None:
    """Bool mask of the voxels that carry a target (None: all of them)."""
    return None if ignore is None else seg != ignore


def region_targets(seg: torch.Tensor, regions: Sequence[Sequence[int]]) -> torch.Tensor:
    """(B, 1, *spatial) index map -> (B, R, *spatial) float: channel r = 1 where the index is one of ``regions[r]``."""
    if seg.ndim < 3 or seg.shape[1] != 1:
        raise ValueError(f"expected an index map (B, 1, *spatial), got shape {tuple(seg.shape)}")
    out = torch.zeros((seg.shape[0], len(regions)) + tuple(seg.shape[2:]), dtype=torch.float32, device=seg.device)
    for r, idx in enumerate(regions):
        out[:, r] = torch.isin(seg[:, 0], torch.as_tensor(list(idx), device=seg.device, dtype=seg.dtype)).float()
    return out


def output_keys(spec: LabelSpec) -> list[str]:
    """What each scored output is called in logs and summaries: a region's values as nnU-Net writes them
    (``"(1, 2, 3)"``), else the foreground label value."""
    if spec.has_regions:
        return [str(tuple(r)) for r in spec.regions]
    return [str(v) for v in spec.foreground_values]


def output_names(spec: LabelSpec) -> dict[str, str]:
    """{output key (:func:`output_keys`): its name in dataset.json} (a region's name, else the label's)."""
    if spec.has_regions:
        names = list(spec.region_names)
    else:
        by_value = dict(zip(spec.label_values, spec.label_names))
        names = [by_value.get(v, str(v)) for v in spec.foreground_values]
    return {k: str(n) for k, n in zip(output_keys(spec), names)}


def output_dice(probs: np.ndarray, seg: np.ndarray, spec: LabelSpec) -> list[float]:
    """Dice of one case on the preprocessed grid per foreground class (argmax of ``probs``) or per region
    (``probs`` > 0.5) against the index map ``seg``; ignored voxels are left out; NaN where both are empty."""
    ign = ignore_index(spec)
    valid = np.ones(seg.shape, bool) if ign is None else seg != ign
    ref = np.where(seg < 0, 0, seg)
    if spec.has_regions:
        pairs = [(probs[r] > 0.5, np.isin(ref, idx)) for r, idx in enumerate(region_indices(spec))]
    else:
        pred = probs.argmax(0)
        pairs = [(pred == c, ref == c) for c in range(1, len(spec.label_values))]
    out = []
    for p, r in pairs:
        p, r = p & valid, r & valid
        denom = np.count_nonzero(p) + np.count_nonzero(r)
        out.append(float("nan") if denom == 0 else 2.0 * np.count_nonzero(p & r) / denom)
    return out
