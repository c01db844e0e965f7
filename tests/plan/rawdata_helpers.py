"""Tiny raw datasets written in the nnU-Net layout with salseg.dataset.io (used by tests/plan and tests/preprocess)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salseg.dataset.dataset_json import DatasetInfo, write_dataset_json
from salseg.dataset.io import write_image


def volume_props(shape, spacing, origin=(0.0, 0.0, 0.0), direction=None) -> dict:
    """props for a 3D (Z, Y, X) volume; ``spacing`` in (z, y, x)."""
    return {"spacing": [float(s) for s in spacing], "origin": [float(o) for o in origin],
            "direction": list(direction or [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]), "itk_size": list(shape)[::-1],
            "ndim": 3, "shape": list(shape)}


def image_2d_props(shape_yx) -> dict:
    return {"spacing": [999.0, 1.0, 1.0], "origin": [0.0, 0.0], "direction": [1.0, 0.0, 0.0, 1.0],
            "itk_size": list(shape_yx)[::-1], "ndim": 2, "shape": [1, *shape_yx]}


def write_raw_dataset(root: Path, name: str, cases: list[dict], *, labels: dict | None = None,
                      channel_names: dict | None = None, groups: dict | None = None, dataset_id: int = 1,
                      file_ending: str = ".nii.gz") -> Path:
    """``cases``: dicts with ``id``, ``image`` (C, Z, Y, X), ``label`` (Z, Y, X), ``props`` -> raw dataset folder."""
    folder = Path(root) / "raw" / f"Dataset{dataset_id:03d}_{name}"
    for c in cases:
        for ch in range(c["image"].shape[0]):
            write_image(c["image"][ch], c["props"], folder / "imagesTr" / f"{c['id']}_{ch:04d}{file_ending}")
        write_image(c["label"], c["props"], folder / "labelsTr" / f"{c['id']}{file_ending}")
    info = DatasetInfo(name=name, channel_names=channel_names or {"0": "MRI"},
                       labels=labels or {"background": 0, "a": 1, "b": 2}, num_training=len(cases),
                       file_ending=file_ending, groups=groups or {})
    write_dataset_json(folder, info)
    return folder


def blob_case(case_id: str, shape, spacing, rng: np.random.Generator, *, pad: int = 2, ct: bool = False) -> dict:
    """A volume with a zero border of ``pad`` voxels (so cropping matters) and two box-shaped labels."""
    Z, Y, X = shape
    img = np.zeros((1, Z, Y, X), np.float32)
    inner = (slice(None), slice(pad if Z > 2 * pad + 2 else 0, Z - pad if Z > 2 * pad + 2 else Z),
             slice(pad, Y - pad), slice(pad, X - pad))
    img[inner] = rng.normal(-500 if ct else 100, 20, size=img[inner].shape)
    lab = np.zeros((Z, Y, X), np.int16)
    lab[:, Y // 4: Y // 2, X // 4: X // 2] = 1
    lab[:, Y // 2: 3 * Y // 4, X // 2: 3 * X // 4] = 2
    lab[img[0] == 0] = 0
    img[0][lab == 1] += 60 if not ct else 600
    img[0][lab == 2] += 120 if not ct else 1200
    return {"id": case_id, "image": img, "label": lab, "props": volume_props(shape, spacing)}


