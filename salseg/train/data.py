"""Patches from preprocessed cases (docs/formats.md "Preprocessed case").

A batch is ``{"data": float32, "seg": int16}`` with
- mode ``3d``:   data (B, C, Z, Y, X), seg (B, 1, Z, Y, X);
- mode ``2d``:   data (B, C, Y, X) from random slices, seg (B, 1, Y, X);
- mode ``2.5d``: data (B, K, C, Y, X) = K neighbouring slices centred on the target slice (indices clamped at the
  volume edge), seg (B, 1, Y, X) of the centre slice.
The last ``round(B * oversample)`` samples of a batch are centred on a foreground voxel of a random class present in
the case (``class_locations``); cases smaller than the patch are padded (data 0, seg -1). Seg holds class indices,
-1 = outside the crop. Everything draws from the ``np.random.Generator`` passed in.

``crop_size`` (default: the patch) enlarges what is cropped around the chosen patch window, centred on it, so
that rotation and zoom-out in the augmentation find image content for the patch's corners
(salseg.train.augment.initial_patch_size); the spatial transform crops the centre back to the patch size. The
window itself (and so foreground centring) is chosen exactly as without enlargement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from salseg.errors import DataError
from salseg.fileio import read_json, read_npz


@dataclass
class Case:
    case_id: str
    data: np.ndarray                 # (C, Z, Y, X) float32
    seg: np.ndarray                  # (Z, Y, X) int16 class indices, -1 outside the crop
    properties: dict
    locations: dict[int, np.ndarray]  # class index -> (N, 3) voxel coordinates


def load_case(folder: str | Path, case_id: str, need_seg: bool = True) -> Case:
    folder = Path(folder)
    npz, js = folder / f"{case_id}.npz", folder / f"{case_id}.json"
    if not npz.is_file():
        raise DataError(f"{npz}: preprocessed case not found (run `salseg preprocess` first)")
    try:
        arrays = read_npz(npz)
    except Exception as e:  # corrupt archive
        raise DataError(f"{npz}: unreadable preprocessed case ({e})") from None
    if "data" not in arrays or arrays["data"].ndim != 4:
        raise DataError(f"{npz}: needs an array 'data' of shape (C, Z, Y, X)")
    data = arrays["data"].astype(np.float32, copy=False)
    seg = arrays.get("seg")
    if seg is None:
        if need_seg:
            raise DataError(f"{npz}: no 'seg' array (a training case needs its label)")
        seg = np.zeros(data.shape[1:], np.int16)
    if seg.shape != data.shape[1:]:
        raise DataError(f"{npz}: 'seg' shape {list(seg.shape)} differs from 'data' spatial shape "
                        f"{list(data.shape[1:])}")
    props = read_json(js)
    locs = {}
    for k, v in (props.get("class_locations") or {}).items():
        arr = np.asarray(v, dtype=np.int64).reshape(-1, 3)
        if len(arr):
            locs[int(k)] = arr
    return Case(case_id, data, seg.astype(np.int16, copy=False), props, locs)


def load_cases(folder: str | Path, case_ids: Sequence[str]) -> list[Case]:
    return [load_case(folder, c) for c in case_ids]


@dataclass
class Window:
    """One sample before cropping: the case's ``data`` (C', *spatial) and ``seg`` (*spatial) arrays (views where
    possible; 2.5d: the K slices (K, C, Y, X)), and the start (may lie outside the arrays) and size of the enlarged
    crop around the chosen window; the window is the crop's centre. ``crop_pad`` of it is what ``sample`` returns."""

    data: np.ndarray
    seg: np.ndarray
    start: list[int]
    size: list[int]


def crop_pad(arr: np.ndarray, starts: Sequence[int], size: Sequence[int], value) -> np.ndarray:
    """``arr[..., s:s+n, ...]`` over the last ``len(size)`` axes; regions outside ``arr`` are filled with ``value``."""
    nd = len(size)
    lead = arr.shape[: arr.ndim - nd]
    spatial = arr.shape[arr.ndim - nd:]
    out = np.full(lead + tuple(size), value, dtype=arr.dtype)
    src, dst = [slice(None)] * len(lead), [slice(None)] * len(lead)
    for s, n, dim in zip(starts, size, spatial):
        lo, hi = max(s, 0), min(s + n, dim)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = arr[tuple(src)]
    return out


def _cropped(w: Window) -> tuple[np.ndarray, np.ndarray]:
    """The enlarged crop of a window: data (C', *crop) padded with 0, seg (1, *crop) padded with -1."""
    return crop_pad(w.data, w.start, w.size, 0.0), crop_pad(w.seg, w.start, w.size, -1)[None]


def _start(rng: np.random.Generator, dim: int, patch: int, centre: int | None) -> int:
    """Patch start on one axis: uniform, or centred on ``centre``; clamped so the patch overlaps the image as much
    as possible (a case smaller than the patch is placed at a random offset inside it)."""
    lo, hi = min(0, dim - patch), max(0, dim - patch)
    if centre is None:
        return int(rng.integers(lo, hi + 1))
    return int(np.clip(centre - patch // 2, lo, hi))


class PatchSampler:
    def __init__(self, cases: Sequence[Case], patch_size: Sequence[int], batch_size: int, mode: str,
                 neighbours: int = 1, oversample: float = 1 / 3, crop_size: Sequence[int] | None = None):
        if not cases:
            raise DataError("no training cases to sample patches from")
        if mode not in ("2d", "2.5d", "3d"):
            raise ValueError(f"unknown sampler mode {mode!r}")
        self.cases, self.patch = list(cases), [int(p) for p in patch_size]
        self.batch_size, self.mode = int(batch_size), mode
        self.k = int(neighbours) if mode == "2.5d" else 1
        self.n_fg = int(round(self.batch_size * oversample))
        if len(self.patch) != (3 if mode == "3d" else 2):
            raise ValueError(f"patch {self.patch} does not fit mode {mode}")
        self.crop = [int(c) for c in crop_size] if crop_size is not None else list(self.patch)
        if len(self.crop) != len(self.patch) or any(c < p or (c - p) % 2 for c, p in zip(self.crop, self.patch)):
            raise ValueError(f"crop size {self.crop} must be >= the patch {self.patch} with the same parity per axis")

    def _fg_centre(self, rng: np.random.Generator, case: Case) -> np.ndarray | None:
        classes = [c for c in sorted(case.locations) if c > 0]
        if not classes:
            return None
        locs = case.locations[classes[int(rng.integers(len(classes)))]]
        return locs[int(rng.integers(len(locs)))]

    def window_one(self, rng: np.random.Generator, force_fg: bool) -> Window:
        case = self.cases[int(rng.integers(len(self.cases)))]
        centre = self._fg_centre(rng, case) if force_fg else None
        shape = case.seg.shape
        if self.mode == "3d":
            starts = [_start(rng, d, p, None if centre is None else int(c))
                      for d, p, c in zip(shape, self.patch, centre if centre is not None else [0, 0, 0])]
            return Window(case.data, case.seg, self._crop_starts(starts), list(self.crop))
        z = int(centre[0]) if centre is not None else int(rng.integers(shape[0]))
        starts = [_start(rng, d, p, None if centre is None else int(c))
                  for d, p, c in zip(shape[1:], self.patch, centre[1:] if centre is not None else [0, 0])]
        if self.mode == "2d":
            return Window(case.data[:, z], case.seg[z], self._crop_starts(starts), list(self.crop))
        zs = np.clip(np.arange(z - self.k // 2, z - self.k // 2 + self.k), 0, shape[0] - 1)
        stack = case.data[:, zs].transpose(1, 0, 2, 3)  # (K, C, Y, X)
        return Window(stack, case.seg[z], self._crop_starts(starts), list(self.crop))

    def sample_one(self, rng: np.random.Generator, force_fg: bool) -> tuple[np.ndarray, np.ndarray]:
        return _cropped(self.window_one(rng, force_fg))

    def windows(self, rng: np.random.Generator) -> list[Window]:
        """The batch's windows, uncropped (the same draws as ``sample``): salseg.train.spatial crops what it needs."""
        return [self.window_one(rng, force_fg=i >= self.batch_size - self.n_fg) for i in range(self.batch_size)]

    def _crop_starts(self, starts: Sequence[int]) -> list[int]:
        """Starts of the (larger) crop centred on the patch window chosen at ``starts``."""
        return [s - (c - p) // 2 for s, c, p in zip(starts, self.crop, self.patch)]

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        data, seg = zip(*[_cropped(w) for w in self.windows(rng)])
        return {"data": np.stack(data).astype(np.float32, copy=False), "seg": np.stack(seg).astype(np.int16)}
