"""A tiny planned + preprocessed dataset written directly in the formats of docs/formats.md.

5 cases of 8 x 32 x 32 (spacing 2 x 1 x 1 mm): a bright disc (label 1) and a dim square (label 2) on noise. The
preprocessed grid equals the raw grid (no crop, no resampling), so exports can be checked against the raw labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

# the test machine's cores are shared: more than one intra-op thread makes tiny convolutions 100x slower
torch.set_num_threads(1)

DS = "Dataset901_Tiny"
CASES = [f"tiny_{i:03d}" for i in range(5)]
SHAPE = (8, 32, 32)


def make_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    z, y, x = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    seg = np.zeros(SHAPE, np.int16)
    cy, cx, r = rng.integers(10, 22), rng.integers(10, 22), rng.integers(4, 7)
    seg[(y - cy) ** 2 + (x - cx) ** 2 <= r * r] = 1
    sy, sx = rng.integers(2, 8), rng.integers(2, 8)
    seg[(z >= 2) & (z < 7) & (y >= sy) & (y < sy + 6) & (x >= sx) & (x < sx + 6)] = 2
    img = rng.normal(0, 0.3, SHAPE).astype(np.float32) + np.where(seg == 1, 2.0, np.where(seg == 2, 1.0, 0.0))
    return img.astype(np.float32), seg


def plans_conf(dim: int, patch, batch: int, **extra) -> dict:
    pools = [[1] * dim] + [[2] * dim] * 2 if dim == 2 else [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    return {"dim": dim, "data_identifier": "3d_fullres" if dim == 3 else "2d",
            "spacing": [1.0, 1.0] if dim == 2 else [2.0, 1.0, 1.0], "patch_size": list(patch),
            "median_shape": list(SHAPE[3 - dim:]), "batch_size": batch, "normalization": ["zscore"],
            "intensity_properties": {}, "pool_op_kernel_sizes": pools, "conv_kernel_sizes": [[3] * dim] * 3,
            "features_per_stage": [32, 64, 128], **extra}


def write_dataset(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    raw = root / "raw" / DS
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    (raw / "dataset.json").write_text(json.dumps({
        "name": "Tiny", "channel_names": {"0": "MRI"}, "labels": {"background": 0, "disc": 1, "square": 2},
        "numTraining": len(CASES), "file_ending": ".nii.gz"}))
    pre = root / "preprocessed" / DS
    for ident in ("2d", "3d_fullres"):
        (pre / ident).mkdir(parents=True)
    for cid in CASES:
        img, seg = make_case(rng)
        for arr, path in ((img, raw / "imagesTr" / f"{cid}_0000.nii.gz"), (seg, raw / "labelsTr" / f"{cid}.nii.gz")):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((1.0, 1.0, 2.0))
            im.SetOrigin((5.0, -3.0, 1.5))
            sitk.WriteImage(im, str(path))
        data = ((img - img.mean()) / img.std())[None].astype(np.float32)
        props = {"case_id": cid,
                 "original": {"spacing": [2.0, 1.0, 1.0], "origin": [5.0, -3.0, 1.5],
                              "direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], "itk_size": [32, 32, 8], "ndim": 3,
                              "shape": list(SHAPE)},
                 "crop_bbox": [[0, s] for s in SHAPE], "shape_after_crop": list(SHAPE),
                 "spacing_after_crop": [2.0, 1.0, 1.0], "spacing": [2.0, 1.0, 1.0],
                 "shape_after_resample": list(SHAPE),
                 "class_locations": {str(c): np.argwhere(seg == c)[:50].tolist() for c in (1, 2)}}
        for ident in ("2d", "3d_fullres"):
            np.savez_compressed(pre / ident / f"{cid}.npz", data=data, seg=seg)
            (pre / ident / f"{cid}.json").write_text(json.dumps(props))
    plans = {"dataset_name": DS, "salseg_version": "test", "seed": 0, "gpu_memory_gb": 8, "num_channels": 1,
             "num_classes": 3, "labels": {"background": 0, "disc": 1, "square": 2}, "label_values": [0, 1, 2],
             "channel_names": {"0": "MRI"}, "original_median_spacing": [2.0, 1.0, 1.0],
             "original_median_shape": list(SHAPE),
             "configurations": {"2d": plans_conf(2, (32, 32), 12), "2.5d": plans_conf(2, (32, 32), 12, neighbours=3),
                                "3d_fullres": plans_conf(3, (8, 32, 32), 2)}}
    (pre / "plans.json").write_text(json.dumps(plans))
    (pre / "splits.json").write_text(json.dumps(
        [{"train": [c for c in CASES if c != v], "val": [v]} for v in CASES]))
    return root


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    return write_dataset(tmp_path / "root")


TINY = dict(epochs=1, iters_per_epoch=2, batch_size=2, width=4, device="cpu", workers=0, seed=0)
