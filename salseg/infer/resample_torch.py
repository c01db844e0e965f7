"""Probabilities on the preprocessed grid -> the cropped raw grid with torch, all classes at once, in chunks.

The same resampling as ``salseg.preprocess.resample_probabilities`` (scipy ``zoom``, grid mode: pixel edges aligned,
edges extended; linear, the thick axis of an anisotropic volume nearest), computed separably: the slab axis (the
thick axis, else axis 0) with explicit source indices and weights (float64, as scipy), the two other axes with
``F.interpolate(mode="bilinear", align_corners=False)``. Linear interpolation is separable, so this is the same
trilinear map up to float rounding. Work happens on the device of the probabilities, ``chunk`` output slices at a
time, so memory stays at about ``chunk_bytes`` besides the input and the output.

``resampled_labels`` takes the argmax per chunk (labels after resampling, never a full-size probability volume);
along a nearest-neighbour slab axis argmax and slice selection commute, so each SOURCE slice is resampled in-plane
and argmaxed once and output slices copy its labels.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_CHUNK_BYTES = 256 * 2 ** 20


def axis_map(n_in: int, n_out: int, nearest: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices i0, i1 and weight w of i1 for every output index along one axis (scipy zoom, grid mode,
    mode "nearest": source coordinate (o + 0.5) * n_in / n_out - 0.5, clamped to the edges)."""
    o = np.arange(n_out, dtype=np.float64)
    if n_in == n_out:
        i = o.astype(np.int64)
        return i, i, np.zeros(n_out)
    x = (o + 0.5) * (n_in / n_out) - 0.5
    if nearest:  # scipy's order 0 takes floor(x + 0.5)
        i = np.clip(np.floor(x + 0.5), 0, n_in - 1).astype(np.int64)
        return i, i, np.zeros(n_out)
    x = np.clip(x, 0, n_in - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, x - i0


def _in_plane(p: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(K, n, Y', X') -> (K, n, Y, X) bilinear (align_corners=False, i.e. scipy's grid mode)."""
    if tuple(p.shape[2:]) == tuple(size):
        return p
    out = F.interpolate(p.transpose(0, 1), size=tuple(int(s) for s in size), mode="bilinear", align_corners=False)
    return out.transpose(0, 1)


def _order(ndim: int, axis: int | None) -> list[int]:
    """Spatial axes with the slab axis (the separately resampled one, else 0) first."""
    slab = 0 if axis is None else int(axis)
    return [slab] + [a for a in range(ndim) if a != slab]


def argmax0(p: torch.Tensor) -> torch.Tensor:
    """Index of the largest of the K values along axis 0 (the first on ties, as ``argmax``), uint8 for K <= 256.

    A running maximum over the classes: ``torch.argmax(dim=0)`` on CPU reduces along a strided axis and is ~10x
    slower than these K element-wise passes."""
    dtype = torch.uint8 if p.shape[0] <= 256 else torch.int64
    best = p[0].clone()
    idx = torch.zeros(p.shape[1:], dtype=dtype, device=p.device)
    for c in range(1, p.shape[0]):
        better = p[c] > best
        idx.masked_fill_(better, c)
        torch.maximum(best, p[c], out=best)
    return idx


def _index_dtype(p: torch.Tensor) -> torch.dtype:
    return torch.uint8 if p.shape[0] <= 256 else torch.int64


def _chunk_len(bytes_per_slice: int, chunk_bytes: int) -> int:
    return max(1, int(chunk_bytes // max(bytes_per_slice, 1)))


def resampled_chunks(prob: torch.Tensor, shape: Sequence[int], axis: int | None,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield (output slice along the slab axis, (K, n, *in-plane) resampled chunk) in the PERMUTED layout
    (slab axis first, see ``_order``); ``axis`` is the thick axis resampled with nearest neighbour (or None)."""
    order = _order(3, axis)
    p = prob.permute(0, *[a + 1 for a in order])
    out_shape = [int(shape[a]) for a in order]
    nearest = axis is not None
    i0, i1, w = axis_map(p.shape[1], out_shape[0], nearest)
    k = p.shape[0]
    n = _chunk_len(k * out_shape[1] * out_shape[2] * p.element_size(), chunk_bytes)
    for a0 in range(0, out_shape[0], n):
        a1 = min(out_shape[0], a0 + n)
        lo, hi = int(i0[a0]), int(i1[a1 - 1]) + 1
        src = _in_plane(p[:, lo:hi], out_shape[1:])  # the source slabs this chunk needs, resampled in-plane
        j0 = i0[a0:a1] - lo
        identity = hi - lo == a1 - a0 and np.array_equal(j0, np.arange(a1 - a0))
        chunk = src if identity else src[:, torch.as_tensor(j0, device=p.device)]
        if not nearest and np.any(w[a0:a1]):
            j1 = torch.as_tensor(i1[a0:a1] - lo, device=p.device)
            wt = torch.as_tensor(w[a0:a1], dtype=p.dtype, device=p.device)[None, :, None, None]
            chunk = torch.lerp(chunk, src[:, j1], wt)
        yield slice(a0, a1), chunk


def resampled_labels(prob: torch.Tensor, shape: Sequence[int], axis: int | None,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """argmax over classes of ``prob`` (K, Z', Y', X') resampled to ``shape``: (Z, Y, X) class indices (uint8
    for up to 256 classes, else int64)."""
    shape = [int(s) for s in shape]
    order = _order(3, axis)
    inverse = list(np.argsort(order))
    out_shape = [shape[a] for a in order]
    if axis is not None and prob.shape[1 + axis] != shape[axis]:
        # nearest along the slab axis: label each source slab once, then copy slabs
        p = prob.permute(0, *[a + 1 for a in order])
        n = _chunk_len(p.shape[0] * out_shape[1] * out_shape[2] * p.element_size(), chunk_bytes)
        src = torch.empty((p.shape[1], *out_shape[1:]), dtype=_index_dtype(p), device=p.device)
        for a0 in range(0, p.shape[1], n):
            src[a0:a0 + n] = argmax0(_in_plane(p[:, a0:a0 + n], out_shape[1:]))
        i0 = axis_map(p.shape[1], out_shape[0], True)[0]
        return src[torch.as_tensor(i0, device=p.device)].permute(*inverse)
    labels = torch.empty(out_shape, dtype=_index_dtype(prob), device=prob.device)
    for sl, chunk in resampled_chunks(prob, shape, axis, chunk_bytes):
        labels[sl] = argmax0(chunk)
    return labels.permute(*inverse)


def resampled_probabilities(prob: torch.Tensor, shape: Sequence[int], axis: int | None,
                            chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """``prob`` (K, Z', Y', X') resampled to (K, *shape) float32, assembled in host memory chunk by chunk."""
    shape = [int(s) for s in shape]
    if list(prob.shape[1:]) == shape:
        return prob.detach().float().cpu().numpy()
    order = _order(3, axis)
    out = np.empty((prob.shape[0], *[shape[a] for a in order]), dtype=np.float32)
    for sl, chunk in resampled_chunks(prob, shape, axis, chunk_bytes):
        out[:, sl] = chunk.float().cpu().numpy()
    return out.transpose(0, *[int(i) + 1 for i in np.argsort(order)])
