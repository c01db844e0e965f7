"""Export: probabilities on the preprocessed grid -> label map (and optional probabilities) on the raw image grid.

The label map is written with the exact spacing, origin and direction of the input image (``properties["original"]``);
output channel i becomes label VALUE ``label_values[i]`` (non-contiguous values such as {0, 21, 22, 23} survive).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from salseg.dataset.io import VOLUME_ENDINGS, file_ending, write_image
from salseg.errors import DataError
from salseg.fileio import write_npz


def label_dtype(label_values: Sequence[int]) -> np.dtype:
    lo, hi = min(label_values), max(label_values)
    if lo >= 0 and hi < 256:
        return np.dtype(np.uint8)
    if -32768 <= lo and hi < 32768:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


def labels_from_probabilities(probabilities: np.ndarray, label_values: Sequence[int]) -> np.ndarray:
    """Argmax over classes, mapped to label values: (K, Z, Y, X) -> (Z, Y, X)."""
    if probabilities.shape[0] != len(label_values):
        raise ValueError(f"{probabilities.shape[0]} probability channels but {len(label_values)} label values")
    lut = np.asarray(label_values, dtype=label_dtype(label_values))
    return lut[np.argmax(probabilities, axis=0)]


def probabilities_path(out_path: Path) -> Path:
    """``<case>.npz`` beside the label file ``<case><ending>``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name[: -len(file_ending(out_path))] + ".npz")


def uncertainty_path(out_path: Path) -> Path:
    """``<case>_uncertainty<ending>`` (``.nii.gz`` when the label ending cannot hold float values)."""
    out_path = Path(out_path)
    end = file_ending(out_path)
    stem = out_path.name[: -len(end)]
    return out_path.with_name(stem + "_uncertainty" + (end if end in VOLUME_ENDINGS else ".nii.gz"))


def revert(probabilities: np.ndarray, properties: dict) -> np.ndarray:
    """Probabilities on the preprocessed grid -> (K, Z, Y, X) on the raw image grid (``revert_preprocessing``)."""
    from salseg.preprocess import revert_preprocessing

    out = revert_preprocessing(probabilities, properties)
    want = tuple(properties["original"]["shape"])
    if tuple(out.shape[1:]) != want:
        raise DataError(f"case {properties.get('case_id', '?')}: reverted shape {tuple(out.shape[1:])} differs "
                        f"from the original image shape {want}")
    return out


def export_prediction(probabilities: np.ndarray, properties: dict, label_values: Sequence[int],
                      out_path: str | Path, save_probabilities: bool = False,
                      uncertainty: np.ndarray | None = None) -> Path:
    """Write the label map of ``probabilities`` (K, Z', Y', X') with the original geometry to ``out_path``.

    With ``save_probabilities`` also writes ``<case>.npz`` holding ``probabilities`` (K, Z, Y, X) float32 on the
    original grid and ``label_values``; an ``uncertainty`` map (Z', Y', X') is written as ``<case>_uncertainty``.
    Every file is written atomically. Returns the label file path.
    """
    out_path = Path(out_path)
    original = properties["original"]
    full = revert(np.asarray(probabilities, dtype=np.float32), properties)
    labels = labels_from_probabilities(full, label_values)
    if uncertainty is not None:
        # as channel 1 of a pair: outside the crop revert fills channel 0 with 1 and the others with 0
        unc = np.asarray(uncertainty, dtype=np.float32)[None]
        unc = revert(np.concatenate([np.zeros_like(unc), unc]), properties)[1]
        write_image(unc.astype(np.float32), original, uncertainty_path(out_path))
    if save_probabilities:
        write_npz(probabilities_path(out_path), probabilities=full.astype(np.float32),
                  label_values=np.asarray(label_values, dtype=np.int64))
    write_image(labels, original, out_path)
    return out_path
