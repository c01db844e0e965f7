"""nnU-Net-style augmentation with batchgenerators, run in background workers (torch DataLoader) or in-process.

Spatial: rotation and scaling (SpatialTransform, no elastic deformation), mirroring. Intensity: Gaussian noise,
Gaussian blur, multiplicative brightness, contrast, simulated low resolution, gamma (inverted and plain).
2.5d batches (B, K, C, Y, X) are augmented as (B, K*C, Y, X) so all K slices get the same spatial transform.

Randomness: every stream of batches takes a seed key; a worker draws from ``seed key + (worker id,)``, both the
sampler's Generator and numpy's and python's global states (which batchgenerators uses). ``epoch_batches`` always shuts its
workers down, also on an exception or KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from batchgenerators.transforms.abstract_transforms import Compose
from batchgenerators.transforms.color_transforms import (BrightnessMultiplicativeTransform,
                                                         ContrastAugmentationTransform, GammaTransform)
from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from salseg.train.data import PatchSampler


@dataclass(frozen=True)
class AugmentParams:
    """Every augmentation setting of a run, in one place (the protocol fingerprint reads it from here).

    Angles in degrees (each rotation axis draws from ``rotation_deg``); ``scale`` multiplies the sampling
    coordinates (> 1 zooms out); ``p_*`` are per-sample probabilities, ``p_*_channel`` per channel.
    """
    rotation_deg: tuple[float, float]
    p_rotation: float = 0.2
    scale: tuple[float, float] = (0.7, 1.4)
    p_scale: float = 0.2
    mirror: bool = True
    p_noise: float = 0.1
    noise_variance: tuple[float, float] = (0.0, 0.1)
    p_blur: float = 0.2
    p_blur_channel: float = 0.5
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    p_brightness: float = 0.15
    brightness: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast: tuple[float, float] = (0.75, 1.25)
    p_lowres: float = 0.25
    p_lowres_channel: float = 0.5
    lowres_zoom: tuple[float, float] = (0.5, 1.0)
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def augmentation_params(patch_size: Sequence[int], dim: int) -> AugmentParams:
    """The run's augmentation settings for its patch."""
    return AugmentParams(rotation_deg=(-180.0, 180.0) if dim == 2 else (-30.0, 30.0))


def build_transforms(patch_size: Sequence[int], dim: int, params: AugmentParams | None = None) -> Compose:
    a = params or augmentation_params(patch_size, dim)
    lo, hi = (np.deg2rad(v) for v in a.rotation_deg)
    if dim == 2:
        angles = dict(angle_x=(lo, hi), angle_y=(0, 0), angle_z=(0, 0))
    else:
        angles = dict(angle_x=(lo, hi), angle_y=(lo, hi), angle_z=(lo, hi))
    return Compose([
        SpatialTransform(list(patch_size), patch_center_dist_from_border=None, do_elastic_deform=False,
                         do_rotation=True, **angles, p_rot_per_axis=1, do_scale=True, scale=a.scale,
                         border_mode_data="constant", border_cval_data=0, order_data=3, border_mode_seg="constant",
                         border_cval_seg=-1, order_seg=0, random_crop=False, p_el_per_sample=0,
                         p_scale_per_sample=a.p_scale, p_rot_per_sample=a.p_rotation,
                         independent_scale_for_each_axis=False),
        GaussianNoiseTransform(a.noise_variance, p_per_sample=a.p_noise),
        GaussianBlurTransform(a.blur_sigma, different_sigma_per_channel=True, p_per_sample=a.p_blur,
                              p_per_channel=a.p_blur_channel),
        BrightnessMultiplicativeTransform(multiplier_range=a.brightness, p_per_sample=a.p_brightness),
        ContrastAugmentationTransform(a.contrast, p_per_sample=a.p_contrast),
        SimulateLowResolutionTransform(zoom_range=a.lowres_zoom, per_channel=True, p_per_channel=a.p_lowres_channel,
                                       order_downsample=0, order_upsample=3, p_per_sample=a.p_lowres,
                                       ignore_axes=None),
        GammaTransform(a.gamma, True, True, retain_stats=True, p_per_sample=a.p_gamma_inverted),
        GammaTransform(a.gamma, False, True, retain_stats=True, p_per_sample=a.p_gamma),
        *([MirrorTransform(tuple(range(dim)))] if a.mirror else []),
    ])


def make_batch(sampler: PatchSampler, transforms: Compose | None, rng: np.random.Generator) -> dict:
    batch = sampler.sample(rng)
    data, seg = batch["data"], batch["seg"]
    if transforms is not None:
        shape = data.shape
        if data.ndim == 5 and sampler.mode == "2.5d":
            data = data.reshape(shape[0], shape[1] * shape[2], *shape[3:])
        out = transforms(data=data, seg=seg.astype(np.float32))
        data = np.asarray(out["data"], np.float32).reshape(shape)
        seg = np.rint(out["seg"])
    return {"data": torch.from_numpy(np.ascontiguousarray(data, np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(seg, np.int64))}


class BatchStream(IterableDataset):
    """``n_batches`` augmented batches, split round-robin over the DataLoader's workers."""

    def __init__(self, sampler: PatchSampler, transforms: Compose | None, n_batches: int, seed_key: Sequence[int]):
        self.sampler, self.transforms, self.n_batches = sampler, transforms, int(n_batches)
        self.seed_key = [int(s) for s in seed_key]

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng(self.seed_key + [wid])
        np.random.seed(int(rng.integers(2 ** 31)))  # batchgenerators draws from numpy's and python's global state
        random.seed(int(rng.integers(2 ** 31)))
        if info is not None:
            torch.set_num_threads(1)
        for _ in range(wid, self.n_batches, nw):
            yield make_batch(self.sampler, self.transforms, rng)


@contextlib.contextmanager
def epoch_batches(sampler: PatchSampler, transforms: Compose | None, n_batches: int, seed_key: Sequence[int],
                  workers: int = 0, pin_memory: bool = False) -> Iterator[Iterator[dict]]:
    """Yield an iterator over one epoch's batches; background workers (if any) are always shut down on exit."""
    stream = BatchStream(sampler, transforms, n_batches, seed_key)
    if workers <= 0:
        yield iter(stream)
        return
    loader = DataLoader(stream, batch_size=None, num_workers=int(workers), pin_memory=pin_memory,
                        persistent_workers=False, prefetch_factor=2)
    it = iter(loader)
    try:
        yield it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        del it
