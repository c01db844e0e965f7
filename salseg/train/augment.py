"""nnU-Net-style augmentation, run in background workers (torch DataLoader) or in-process.

Spatial (salseg.train.spatial: batchgenerators' rotation and scaling, no elastic deformation, reading only the
voxels it needs from the case), then mirroring.
Intensity (salseg.train.intensity): Gaussian noise, Gaussian blur, multiplicative brightness, contrast, simulated
low resolution, gamma (inverted and plain). Every setting is in ``AugmentParams`` (the protocol fingerprint reads
it from there). A 2.5d batch (B, K, C, Y, X) is slice-consistent: the K slices of a sample get the same spatial
transform and the same intensity parameters (only the noise field differs voxel by voxel); the channels of a
multi-channel image keep their own intensity draws.

Rotation range (nnU-Net's rule, ``rotation_range``): 2D ±180°, or ±15° when the patch is elongated (longest /
shortest side > 1.5); 3D ±30° about each axis. Enlarged initial patch (``initial_patch_size``): the sampler crops
the bounding box of the rotated and scaled patch around the chosen window, and the spatial transform crops the
centre back to the patch size, so rotated or zoomed-out patches have image content in their corners.

Randomness: every stream of batches takes a seed key; a worker draws from ``seed key + (worker id,)``: the
sampler's and the intensity transforms' Generator, and numpy's and python's global states (which batchgenerators'
spatial transforms use). ``epoch_batches`` always shuts its workers down, also on an exception or
KeyboardInterrupt.

A training run uses ONE loader for all its epochs (``run_batches``): its workers start once and stay alive
(persistent), pinned memory on CUDA, and batch i of epoch e is drawn from the seed key ``key + (e, i)`` whatever
the number of workers, so a resumed run sees the batches an uninterrupted run would have seen. With an
``augmenter`` (salseg.train.gpu_augment, ``--augment-device``) the workers only sample patches and the whole batch
is augmented on the augmenter's device in the main process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from batchgenerators.transforms.spatial_transforms import MirrorTransform
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from salseg.parallel import available_cores
from salseg.train.data import PatchSampler, Window
from salseg.train.intensity import augment_intensity
from salseg.train.spatial import augment_windows


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
    lowres_upsample: str = "torch bicubic (2D) / trilinear (3D)"   # in the protocol: earlier versions used splines
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def rotation_range(patch_size: Sequence[int], dim: int) -> tuple[float, float]:
    """nnU-Net's rule (degrees): 2D ±180°, or ±15° for an elongated patch (longest / shortest side > 1.5);
    3D ±30° about each axis."""
    if dim == 2:
        return (-15.0, 15.0) if max(patch_size) / min(patch_size) > 1.5 else (-180.0, 180.0)
    return (-30.0, 30.0)


def augmentation_params(patch_size: Sequence[int], dim: int) -> AugmentParams:
    """The run's augmentation settings for its patch."""
    return AugmentParams(rotation_deg=rotation_range(patch_size, dim))


def _rotations(angles: np.ndarray, dim: int) -> np.ndarray:
    """Rotation matrices (N, dim, dim) as batchgenerators builds them: 2D R(a); 3D Rx(ax) Ry(ay) Rz(az)."""
    c, s = np.cos(angles), np.sin(angles)
    one, zero = np.ones_like(c), np.zeros_like(c)
    if dim == 2:
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    cx, cy, cz, sx, sy, sz = c[:, 0], c[:, 1], c[:, 2], s[:, 0], s[:, 1], s[:, 2]
    o, z = one[:, 0], zero[:, 0]
    rx = np.stack([np.stack([o, z, z], -1), np.stack([z, cx, -sx], -1), np.stack([z, sx, cx], -1)], -2)
    ry = np.stack([np.stack([cy, z, sy], -1), np.stack([z, o, z], -1), np.stack([-sy, z, cy], -1)], -2)
    rz = np.stack([np.stack([cz, -sz, z], -1), np.stack([sz, cz, z], -1), np.stack([z, z, o], -1)], -2)
    return rx @ ry @ rz


def initial_patch_size(patch_size: Sequence[int], params: AugmentParams) -> list[int]:
    """The patch the sampler crops so that the rotated and scaled final patch lies inside it (cf. nnU-Net's
    ``get_patch_size``): the bounding box of the patch over the rotation range (up to 90° per axis, which already
    reaches every orientation's box), times the largest coordinate scale (> 1 samples a larger region), rounded up
    to the final patch's parity per axis so the spatial transform's centre crop is exact."""
    patch = np.asarray([int(p) for p in patch_size], float)
    dim = len(patch)
    extent = patch.copy()
    if params.p_rotation > 0:
        lo, hi = (float(np.deg2rad(np.clip(v, -90, 90))) for v in params.rotation_deg)
        steps = np.linspace(lo, hi, 361 if dim == 2 else 25)
        grid = steps if dim == 2 else np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
        m = _rotations(grid, dim)
        # batchgenerators rotates coordinates as coords' = M^T coords: axis i spans sum_j |M[j, i]| patch_j
        extent = np.maximum(extent, (np.abs(m).transpose(0, 2, 1) @ patch).max(0))
    if params.p_scale > 0:
        extent = extent * max(1.0, float(max(params.scale)))
    need = np.ceil(extent - 1e-6).astype(int)
    return [int(p + 2 * -(-(n - p) // 2)) if n > p else int(p) for p, n in zip(patch.astype(int), need)]


class Augmenter:
    """The training pipeline: spatial transform, slice-consistent intensity transforms, mirroring.

    ``augmenter(data, seg, rng)``: data (B, C, *spatial) or a 2.5d batch (B, K, C, Y, X); seg (B, 1, *spatial), the
    enlarged crops; ``augmenter.windows(windows, rng)``: the same from the sampler's uncropped windows (what the
    loader uses: only the voxels the transform reads are cropped). The spatial transform (salseg.train.spatial:
    batchgenerators' rotation and scaling, data cubic, labels nearest, -1 outside) and the mirroring see the K*C
    slice-channels of a sample as one image (one draw for all); the intensity transforms (salseg.train.intensity)
    draw per sample and channel and apply to all K slices.
    """

    def __init__(self, patch_size: Sequence[int], dim: int, params: AugmentParams | None = None):
        self.patch, self.dim = [int(p) for p in patch_size], int(dim)
        self.params = a = params or augmentation_params(patch_size, dim)
        lo, hi = (float(np.deg2rad(v)) for v in a.rotation_deg)
        self.angles = [(lo, hi)] * 3 if dim == 3 else [(lo, hi), (0.0, 0.0), (0.0, 0.0)]
        self.mirror = MirrorTransform(tuple(range(dim))) if a.mirror else None

    def windows(self, windows: Sequence[Window], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        a = self.params
        flat = [Window(w.data.reshape(-1, *w.data.shape[-self.dim:]), w.seg, w.start, w.size) for w in windows]
        x, y = augment_windows(flat, self.patch, self.angles, a.p_rotation, tuple(a.scale), a.p_scale)
        lead = windows[0].data.shape[:-self.dim]
        k, c = (lead[0], lead[1]) if len(lead) == 2 else (1, lead[0])
        b = len(windows)
        x = x.reshape(b, k, c, *self.patch)
        augment_intensity(x, a, rng)
        if self.mirror is not None:
            out = self.mirror(data=x.reshape(b, k * c, *self.patch), seg=y)
            x, y = out["data"], out["seg"]
        return np.asarray(x, np.float32).reshape(b, *lead, *self.patch), y

    def __call__(self, data: np.ndarray, seg: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        shape = list(data.shape[-self.dim:])
        return self.windows([Window(d, s[0], [0] * self.dim, shape) for d, s in zip(data, seg)], rng)


def build_transforms(patch_size: Sequence[int], dim: int, params: AugmentParams | None = None) -> Augmenter:
    return Augmenter(patch_size, dim, params)


def training_pipeline(cases, cfg) -> tuple[PatchSampler, Augmenter]:
    """(sampler, augmenter) of a run: the sampler crops the enlarged initial patch, the augmenter brings the
    rotated / scaled result back to ``cfg.patch_size``."""
    params = augmentation_params(cfg.patch_size, cfg.dim)
    sampler = PatchSampler(cases, cfg.patch_size, cfg.batch_size, cfg.mode, cfg.neighbours,
                           cfg.oversample_foreground, crop_size=initial_patch_size(cfg.patch_size, params))
    return sampler, Augmenter(cfg.patch_size, cfg.dim, params)


def make_batch(sampler: PatchSampler, transforms: Augmenter | None, rng: np.random.Generator) -> dict:
    if transforms is not None:
        data, seg = transforms.windows(sampler.windows(rng), rng)
        seg = np.rint(seg)
    else:
        batch = sampler.sample(rng)
        data, seg = batch["data"], batch["seg"]
    return {"data": torch.from_numpy(np.ascontiguousarray(data, np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(seg, np.int64))}


class BatchStream(IterableDataset):
    """``n_batches`` augmented batches, split round-robin over the DataLoader's workers."""

    def __init__(self, sampler: PatchSampler, transforms: Augmenter | None, n_batches: int, seed_key: Sequence[int]):
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
def epoch_batches(sampler: PatchSampler, transforms: Augmenter | None, n_batches: int, seed_key: Sequence[int],
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

    def __init__(self, sampler: PatchSampler, transforms: Augmenter | None, iters_per_epoch: int,
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
def run_batches(sampler: PatchSampler, transforms: Augmenter | None, iters_per_epoch: int, seed_key: Sequence[int],
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
