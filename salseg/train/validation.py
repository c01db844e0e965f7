"""In-training validation: whole validation cases predicted by sliding window (no mirroring) on the preprocessed
grid and scored per foreground class (the trainer's "in-training Dice estimate"; the final validation in the
original geometry is salseg.train.report.export_validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from salseg.nets.capabilities import capabilities_of
from salseg.run.config import RunConfig
from salseg.train.data import load_case
from salseg.train.targets import output_dice

Progress = Callable[[str, int, int], None]


def validation_sampling(model: nn.Module):
    """Cheap sampling options (the network's ``validation_steps`` DDIM steps) for diffusion models, else None."""
    caps = capabilities_of(model)
    if not caps.diffusion:
        return None
    from salseg.infer.predictor import DiffusionOptions

    return DiffusionOptions(steps=caps.validation_steps)


def dice_per_class(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> list[float]:
    """Dice of classes 1..num_classes-1; NaN where both prediction and reference are empty."""
    ref = np.where(ref < 0, 0, ref)
    out = []
    for c in range(1, num_classes):
        p, r = pred == c, ref == c
        tp, denom = np.count_nonzero(p & r), np.count_nonzero(p) + np.count_nonzero(r)
        out.append(float("nan") if denom == 0 else 2.0 * tp / denom)
    return out


def time_one_window(model: nn.Module, cfg: RunConfig, device: torch.device, planes: int = 1,
                    repeats: int = 2) -> float:
    """Seconds per sliding window of a validation on this machine now: a zero case of ``planes`` slices of one
    window each (2D and slice models predict a volume's slices together: batches, and a slice model's cache and
    its neighbours at chunk edges; 3D: one patch) predicted unmirrored ``repeats`` times; the fastest run (the
    first pays one-off allocations), divided by its windows. The closing validation's estimate under a time budget
    starts from this, not from the training rate: a forward pass without gradients on a loaded machine is no fixed
    fraction of a training step."""
    import time

    from salseg.infer.predictor import predict_preprocessed

    patch = [int(p) for p in cfg.patch_size]
    planes = 1 if len(patch) == 3 else max(1, int(planes))
    data = np.zeros((cfg.in_channels, planes, *patch) if len(patch) == 2 else (cfg.in_channels, *patch),
                    dtype=np.float32)
    best = float("inf")
    was_training = model.training
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        predict_preprocessed(model, data, cfg.configuration, num_classes=cfg.num_classes, step=0.5,
                             mirroring=False, device=device, diffusion=validation_sampling(model),
                             regions=cfg.labels.has_regions)
        best = min(best, time.perf_counter() - t0)
    model.train(was_training)
    return best / planes


def validate(model: nn.Module, cfg: RunConfig, folder: Path, cases: Sequence[str], device: torch.device,
             progress: Progress | None = None) -> tuple[list, float | None]:
    """Whole-case sliding-window Dice per foreground class (mean over cases) and their mean."""
    from salseg.infer.predictor import predict_preprocessed

    per_case, spec = [], cfg.labels
    model.eval()
    for i, cid in enumerate(cases):
        case = load_case(folder, cid)
        probs = predict_preprocessed(model, case.data, cfg.configuration, num_classes=cfg.num_classes, step=0.5,
                                     mirroring=False, device=device, diffusion=validation_sampling(model),
                                     regions=spec.has_regions)
        per_case.append(output_dice(probs, case.seg, spec))
        if progress:
            progress("validation", i + 1, len(cases))
    arr = np.asarray(per_case, dtype=float).reshape(len(cases), -1)
    with np.errstate(all="ignore"):
        per_class = [None if np.all(np.isnan(col)) else float(np.nanmean(col)) for col in arr.T]
    valid = [d for d in per_class if d is not None]
    return per_class, (float(np.mean(valid)) if valid else None)
