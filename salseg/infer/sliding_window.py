"""Sliding-window prediction with Gaussian importance weighting (nnU-Net style), 2D and 3D.

What is averaged: the raw outputs of ``model_fn`` (logits for segmenters), weighted per voxel by a Gaussian
importance map centred on each tile, exactly as nnU-Net v2 does; the caller applies softmax afterwards
(``salseg.infer.predictor``). Mirroring test-time augmentation is applied per tile, also as nnU-Net: the tile is
flipped, predicted, flipped back, and the outputs of all flip combinations are averaged before weighting.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

ModelFn = Callable[[torch.Tensor], torch.Tensor]
# accumulators larger than this many bytes go to host memory when the device is a GPU
DEVICE_ACCUMULATION_LIMIT = 8 * 1024 ** 3


def gaussian_importance_map(patch_size: Sequence[int], sigma_scale: float = 1.0 / 8,
                            value_scaling_factor: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    """Separable Gaussian over a patch: sigma = ``sigma_scale`` * size per axis, centred on the patch.

    The centre is the geometric one ((size - 1) / 2) so the map is symmetric under flips. The maximum equals
    ``value_scaling_factor``; no value is zero (the smallest is the minimum of the exact Gaussian, which is
    positive), so every voxel of a tile contributes.
    """
    size = [int(s) for s in patch_size]
    if any(s < 1 for s in size):
        raise ValueError(f"patch size must be positive, got {list(patch_size)}")
    out = torch.ones(size, dtype=torch.float64)
    for axis, n in enumerate(size):
        sigma = max(n * sigma_scale, 1e-6)
        coords = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        g = torch.exp(-0.5 * (coords / sigma) ** 2)
        shape = [1] * len(size)
        shape[axis] = n
        out = out * g.reshape(shape)
    out = out / out.max() * value_scaling_factor
    tiny = out[out > 0].min() if torch.any(out > 0) else torch.tensor(1.0, dtype=torch.float64)
    out = torch.where(out > 0, out, tiny)
    return out.to(dtype)


def compute_steps(image_size: Sequence[int], patch_size: Sequence[int], step: float) -> list[list[int]]:
    """Tile start positions per axis: the fewest tiles whose spacing is at most ``step`` * patch, spread evenly
    so that the first tile starts at 0 and the last ends at the image border (nnU-Net's rule)."""
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    steps = []
    for im, p in zip(image_size, patch_size):
        if im < p:
            raise ValueError(f"image size {list(image_size)} smaller than patch {list(patch_size)}; pad first")
        target = p * step
        n = int(math.ceil((im - p) / target)) + 1 if im > p else 1
        if n == 1:
            steps.append([0])
            continue
        actual = (im - p) / (n - 1)
        steps.append([int(round(actual * i)) for i in range(n)])
    return steps


def _pad_to(image: torch.Tensor, patch_size: Sequence[int]) -> tuple[torch.Tensor, list[slice]]:
    """Zero-pad the spatial axes (all but the first ``image.ndim - len(patch)``) to at least the patch size,
    centred like nnU-Net; returns the padded image and the slices that recover the original region."""
    nsp = len(patch_size)
    spatial = image.shape[-nsp:]
    before = [max(p - s, 0) // 2 for s, p in zip(spatial, patch_size)]
    after = [max(p - s, 0) - b for s, p, b in zip(spatial, patch_size, before)]
    keep = [slice(b, b + s) for b, s in zip(before, spatial)]
    if not any(before) and not any(after):
        return image, keep
    pad = []
    for b, a in zip(reversed(before), reversed(after)):
        pad += [b, a]
    return F.pad(image, pad, mode="constant", value=0.0), keep


def mirror_combinations(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """All subsets of ``mirror_axes`` (including the empty one = the unflipped tile)."""
    axes = sorted(set(int(a) for a in mirror_axes))
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def predict_mirrored(model_fn: ModelFn, x: torch.Tensor, mirror_axes: Sequence[int],
                     batch_flips: bool = False) -> torch.Tensor:
    """Mean of ``flip(model_fn(flip(x)))`` over all flip combinations of ``mirror_axes`` (spatial axis indices:
    0 = first spatial axis of the patch). ``batch_flips``: one ``model_fn`` call on every flipped copy of the tiles
    (a CPU prediction splits it into chunks and streams, salseg.infer.threads; also a single 3D tile then has work
    for every core); the sum runs in the same order either way."""
    combos = mirror_combinations(mirror_axes)
    flips = [[a + 2 for a in combo] for combo in combos]
    if batch_flips and len(combos) > 1:
        ys = model_fn(torch.cat([torch.flip(x, dims) if dims else x for dims in flips])).split(x.shape[0])
    else:
        ys = (model_fn(torch.flip(x, dims) if dims else x) for dims in flips)
    total = None
    for dims, y in zip(flips, ys):
        if dims:
            y = torch.flip(y, dims)
        y = y.float()
        total = y if total is None else total + y
    return total if len(combos) == 1 else total / len(combos)


def _allocate(shape, device: torch.device) -> tuple[torch.Tensor, torch.device]:
    nbytes = int(np.prod(shape)) * 4
    if device.type != "cpu" and nbytes <= DEVICE_ACCUMULATION_LIMIT:
        try:
            return torch.zeros(shape, dtype=torch.float32, device=device), device
        except RuntimeError as e:  # out of memory on the accelerator: accumulate on the host instead
            if "out of memory" not in str(e).lower():
                raise
            log.info("accumulating the sliding-window output on the CPU (device out of memory)")
    return torch.zeros(shape, dtype=torch.float32), torch.device("cpu")


@torch.inference_mode()
def sliding_window_predict_batch(model_fn: ModelFn, images: torch.Tensor, patch_size: Sequence[int], *,
                                 num_classes: int, step: float = 0.5, gaussian: bool = True,
                                 mirror_axes: Sequence[int] = (), batch_size: int = 1,
                                 device: str | torch.device = "cpu",
                                 progress: Callable[[str, int, int], None] | None = None,
                                 description: str = "sliding window", batch_flips: bool = False) -> torch.Tensor:
    """Sliding window over N images at once: ``images`` (N, C, *spatial) -> (N, num_classes, *spatial).

    Tiles of all N images share positions; a batch holds up to ``batch_size`` (image, position) tiles, so slices
    of a volume predicted in 2D are batched together (``batch_flips``: see :func:`predict_mirrored`).
    """
    device = torch.device(device)
    patch_size = [int(p) for p in patch_size]
    nsp = len(patch_size)
    if images.ndim != nsp + 2:
        raise ValueError(f"images must be (N, C, {nsp} spatial axes), got shape {tuple(images.shape)}")
    n_img = images.shape[0]
    padded, keep = _pad_to(images, patch_size)
    spatial = list(padded.shape[2:])
    steps = compute_steps(spatial, patch_size, step)
    positions = list(itertools.product(*steps))
    items = [(n, pos) for pos in positions for n in range(n_img)]
    weight_map = (gaussian_importance_map(patch_size) if gaussian else torch.ones(patch_size)).to(device)

    acc, acc_device = _allocate([n_img, num_classes] + spatial, device)
    norm = torch.zeros([1, 1] + spatial, dtype=torch.float32, device=acc_device)
    w_acc = weight_map.to(acc_device)
    for pos in positions:  # the weight sum is the same for every image
        sl = tuple(slice(p, p + s) for p, s in zip(pos, patch_size))
        norm[(0, 0) + sl] += w_acc

    total = len(items)
    for start in range(0, total, max(1, int(batch_size))):
        chunk = items[start:start + max(1, int(batch_size))]
        tiles = torch.stack([padded[n][(slice(None),) + tuple(slice(p, p + s) for p, s in zip(pos, patch_size))]
                             for n, pos in chunk]).to(device, non_blocking=True)
        out = predict_mirrored(model_fn, tiles, mirror_axes, batch_flips)
        if out.shape[1] != num_classes or list(out.shape[2:]) != patch_size:
            raise ValueError(f"model output {tuple(out.shape)} does not match (B, {num_classes}, {patch_size})")
        out = (out * weight_map).to(acc_device)
        for (n, pos), o in zip(chunk, out):
            acc[(n, slice(None)) + tuple(slice(p, p + s) for p, s in zip(pos, patch_size))] += o
        if progress is not None:
            progress(description, min(start + len(chunk), total), total)
    acc /= norm
    return acc[(slice(None), slice(None)) + tuple(keep)]


def sliding_window_predict(model_fn: ModelFn, image: torch.Tensor, patch_size: Sequence[int], *, num_classes: int,
                           step: float = 0.5, gaussian: bool = True, mirror_axes: Sequence[int] = (),
                           batch_size: int = 1, device: str | torch.device = "cpu",
                           progress: Callable[[str, int, int], None] | None = None,
                           batch_flips: bool = False) -> torch.Tensor:
    """Predict ``image`` (C, *spatial) tile by tile -> (num_classes, *spatial) float32 on the accumulation device.

    ``model_fn`` maps a batch (B, C, *patch_size) to (B, num_classes, *patch_size) (logits). The output is the
    Gaussian-weighted average of the tile outputs (logit averaging, as nnU-Net; apply softmax afterwards). Images
    smaller than the patch are zero-padded (centred) and the padding is cropped off again. Tiles are spaced by at
    most ``step`` * patch size. ``mirror_axes`` are spatial axis indices (0 = first spatial axis) for mirroring
    TTA. Accumulation is float32 on ``device`` (on the host for very large outputs or when the device runs out of
    memory).
    """
    if image.ndim != len(patch_size) + 1:
        raise ValueError(f"image must be (C, {len(patch_size)} spatial axes), got shape {tuple(image.shape)}")
    return sliding_window_predict_batch(model_fn, image[None], patch_size, num_classes=num_classes, step=step,
                                        gaussian=gaussian, mirror_axes=mirror_axes, batch_size=batch_size,
                                        device=device, progress=progress, batch_flips=batch_flips)[0]
