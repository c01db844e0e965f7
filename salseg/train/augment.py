"""nnU-Net-style augmentation with batchgenerators, run in background workers (torch DataLoader) or in-process.

Spatial: rotation and scaling (SpatialTransform, no elastic deformation), mirroring. Intensity: Gaussian noise,
Gaussian blur, multiplicative brightness, contrast, simulated low resolution, gamma (inverted and plain).
2.5d batches (B, K, C, Y, X) are augmented as (B, K*C, Y, X) so all K slices get the same spatial transform.

Randomness: every stream of batches takes a seed key; a worker draws from ``seed key + (worker id,)``, both the
sampler's Generator and numpy's and python's global states (which batchgenerators uses). ``epoch_batches`` always shuts its
workers down, also on an exception or KeyboardInterrupt.

A training run uses ONE loader for all its epochs (``run_batches``): its workers start once and stay alive
(persistent), pinned memory on CUDA, and batch i of epoch e is drawn from the seed key ``key + (e, i)`` whatever
the number of workers, so a resumed run sees the batches an uninterrupted run would have seen. With an
``augmenter`` (salseg.train.gpu_augment, ``--augment-device``) the workers only sample patches and the whole batch
is augmented on the augmenter's device in the main process.
"""

from __future__ import annotations

import contextlib
import os
import random
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


def build_transforms(patch_size: Sequence[int], dim: int) -> Compose:
    if dim == 2:
        angles = dict(angle_x=(-np.pi, np.pi), angle_y=(0, 0), angle_z=(0, 0))
    else:
        a = 30 / 360 * 2 * np.pi
        angles = dict(angle_x=(-a, a), angle_y=(-a, a), angle_z=(-a, a))
    return Compose([
        SpatialTransform(list(patch_size), patch_center_dist_from_border=None, do_elastic_deform=False,
                         do_rotation=True, **angles, p_rot_per_axis=1, do_scale=True, scale=(0.7, 1.4),
                         border_mode_data="constant", border_cval_data=0, order_data=3, border_mode_seg="constant",
                         border_cval_seg=-1, order_seg=0, random_crop=False, p_el_per_sample=0,
                         p_scale_per_sample=0.2, p_rot_per_sample=0.2, independent_scale_for_each_axis=False),
        GaussianNoiseTransform(p_per_sample=0.1),
        GaussianBlurTransform((0.5, 1.0), different_sigma_per_channel=True, p_per_sample=0.2, p_per_channel=0.5),
        BrightnessMultiplicativeTransform(multiplier_range=(0.75, 1.25), p_per_sample=0.15),
        ContrastAugmentationTransform(p_per_sample=0.15),
        SimulateLowResolutionTransform(zoom_range=(0.5, 1), per_channel=True, p_per_channel=0.5, order_downsample=0,
                                       order_upsample=3, p_per_sample=0.25, ignore_axes=None),
        GammaTransform((0.7, 1.5), True, True, retain_stats=True, p_per_sample=0.1),
        GammaTransform((0.7, 1.5), False, True, retain_stats=True, p_per_sample=0.3),
        MirrorTransform(tuple(range(dim))),
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


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, e.g. a Slurm or container limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(device_type: str) -> int:
    """Loader worker processes when the user gives none: on CUDA every core but the main process's (at most 16);
    on a CPU 0, because there the model's own threads already use every core and an extra process competes with
    them (benchmarks/training_throughput.py measures both; docs/performance.md)."""
    if device_type != "cuda":
        return 0
    return max(1, min(16, available_cores() - 1))


def _worker_split() -> tuple[int, int]:
    info = get_worker_info()
    if info is not None:
        torch.set_num_threads(1)
        return info.id, info.num_workers
    return 0, 1


class RunStream(IterableDataset):
    """Every batch of a run: ``iters_per_epoch`` batches for each epoch of ``epochs``, in order, split round-robin
    over the DataLoader's workers (the order in which the DataLoader hands them out). Batch i of epoch e draws
    from ``seed_key + [e, i]``."""

    def __init__(self, sampler: PatchSampler, transforms: Compose | None, iters_per_epoch: int,
                 seed_key: Sequence[int], epochs: Sequence[int]):
        self.sampler, self.transforms, self.iters = sampler, transforms, int(iters_per_epoch)
        self.seed_key, self.epochs = [int(s) for s in seed_key], [int(e) for e in epochs]

    def __len__(self) -> int:
        return len(self.epochs) * self.iters

    def __iter__(self) -> Iterator[dict]:
        wid, nw = _worker_split()
        for g in range(wid, len(self), nw):
            epoch, i = self.epochs[g // self.iters], g % self.iters
            rng = np.random.default_rng(self.seed_key + [epoch, i])
            np.random.seed(int(rng.integers(2 ** 31)))  # batchgenerators draws from numpy's and python's state
            random.seed(int(rng.integers(2 ** 31)))
            yield make_batch(self.sampler, self.transforms, rng)


class RunBatches:
    """The batches of one run, epoch by epoch, from one iterator over a ``RunStream`` (see ``run_batches``)."""

    def __init__(self, iterator: Iterator[dict], iters_per_epoch: int, seed_key: Sequence[int], augmenter=None):
        self._it, self.iters, self.seed_key, self.augmenter = iterator, int(iters_per_epoch), list(seed_key), augmenter

    def epoch(self, epoch: int) -> Iterator[dict]:
        """The next ``iters_per_epoch`` batches (those of ``epoch``: epochs must be asked for in order)."""
        if self.augmenter is not None:
            self.augmenter.reseed(self.seed_key + [int(epoch), 2 ** 31])  # a key no batch uses
        for _ in range(self.iters):
            batch = next(self._it)
            if self.augmenter is not None:
                data, target = self.augmenter(batch["data"], batch["target"])
                batch = {"data": data, "target": target}
            yield batch


@contextlib.contextmanager
def run_batches(sampler: PatchSampler, transforms: Compose | None, iters_per_epoch: int, seed_key: Sequence[int],
                epochs: Sequence[int], workers: int = 0, pin_memory: bool = False,
                augmenter=None) -> Iterator[RunBatches]:
    """One loader for a whole run (``epochs``, e.g. ``range(start, total)``); its workers, started once, persist
    until the run ends and are always shut down on exit, also on an exception or KeyboardInterrupt. With an
    ``augmenter`` the workers skip ``transforms`` and hand raw patches to it."""
    stream = RunStream(sampler, None if augmenter is not None else transforms, iters_per_epoch, seed_key, epochs)
    if workers <= 0 or len(stream) == 0:
        yield RunBatches(iter(stream), iters_per_epoch, seed_key, augmenter)
        return
    loader = DataLoader(stream, batch_size=None, num_workers=int(workers), pin_memory=pin_memory,
                        persistent_workers=True, prefetch_factor=2)
    it = iter(loader)
    try:
        yield RunBatches(it, iters_per_epoch, seed_key, augmenter)
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        del it
