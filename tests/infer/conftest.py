"""A hand-made result folder (tiny 3D unet, random weights) for predictor / CLI input-validation tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from salseg import results
from tests.threads import one_thread  # noqa: F401  (autouse in this folder)

DATASET = "Dataset901_InferToy"
LABELS = {"background": 0, "a": 1, "b": 5}


def write_volume(path: Path, arr: np.ndarray, spacing=(1.0, 1.0, 2.0)) -> None:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


def make_plans(spacing=(2.0, 1.0, 1.0), patch=(8, 16, 16)) -> dict:
    conf = {"dim": 3, "data_identifier": "3d_fullres", "spacing": list(spacing), "patch_size": list(patch),
            "median_shape": [10, 20, 20], "batch_size": 2, "normalization": ["zscore"],
            "intensity_properties": {}, "pool_op_kernel_sizes": [[1, 1, 1], [2, 2, 2]],
            "conv_kernel_sizes": [[3, 3, 3], [3, 3, 3]], "features_per_stage": [2, 4]}
    return {"dataset_name": DATASET, "salseg_version": "test", "seed": 0, "gpu_memory_gb": 8, "num_channels": 1,
            "num_classes": 3, "labels": LABELS, "label_values": [0, 1, 5], "channel_names": {"0": "MRI"},
            "original_median_spacing": [2.0, 1.0, 1.0], "original_median_shape": [10, 20, 20],
            "configurations": {"3d_fullres": conf}}


def make_run(root: Path, fold: int, plans: dict, seed: int = 0) -> Path:
    from salseg.fileio import write_json
    from salseg.run.checkpoint import save_checkpoint
    from salseg.run import RunConfig, build_model

    conf = plans["configurations"]["3d_fullres"]
    cfg = RunConfig(dataset=DATASET, network="unet", module="none", config="3d_fullres", fold=fold, configuration=conf,
                    label_values=[0, 1, 5], in_channels=1, num_classes=3, dim=3, mode="3d", neighbours=1,
                    data_identifier="3d_fullres", file_ending=".nii.gz", epochs=1, iters_per_epoch=1, batch_size=2,
                    patch_size=list(conf["patch_size"]), lr=0.01, optimizer="sgd", weight_decay=0.0,
                    options={"deep_supervision": False}, seed=seed)
    fdir = results.fold_dir(root, DATASET, "unet", "none", "3d_fullres", fold)
    fdir.mkdir(parents=True, exist_ok=True)
    cfg.save(fdir / results.CONFIG_JSON)
    torch.manual_seed(seed)
    save_checkpoint(fdir / results.CHECKPOINT_FINAL, model=build_model(cfg).state_dict())
    write_json(results.plans_file(root, DATASET), plans)
    return fdir


@pytest.fixture
def toy_root(tmp_path) -> Path:
    """root with a raw dataset (2 test images), plans and two trained folds (0, 1)."""
    from salseg.dataset.dataset_json import parse_dataset_json, write_dataset_json

    root = tmp_path / "root"
    raw = results.raw_dir(root, DATASET)
    info = parse_dataset_json({"channel_names": {"0": "MRI"}, "labels": LABELS, "numTraining": 0,
                               "file_ending": ".nii.gz"}, "test")
    raw.mkdir(parents=True)
    write_dataset_json(raw, info)
    rng = np.random.default_rng(0)
    for i in range(2):
        write_volume(raw / "imagesTs" / f"case{i}_0000.nii.gz", rng.normal(size=(7, 16, 23)).astype(np.float32))
    plans = make_plans()
    for fold in (0, 1):
        make_run(root, fold, plans, seed=fold)
    return root


@pytest.fixture
def write_vol():
    """The helper that writes a (Z, Y, X) array as a 3D image."""
    return write_volume
