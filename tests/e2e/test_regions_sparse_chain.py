"""The whole chain on the synthetic region (BraTS-like) and sparse (ignore label) datasets: synth, plan,
preprocess, train a few iterations, predict, evaluate, stats -- tiny and fast (seconds of training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from typer.testing import CliRunner

from salseg_cli.main import app


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny convolutions on shared cores
    yield
    torch.set_num_threads(old)


def _run(root, *args):
    res = CliRunner().invoke(app, ["--root", str(root), *map(str, args)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


TRAIN = ["-c", "2d", "-f", "0", "--epochs", "1", "--iters-per-epoch", "2", "--batch-size", "2", "--width", "8", "-q",
         "--patch-size"]


def _values(folder):
    return {int(v) for p in folder.iterdir() if p.name.endswith(".nii.gz")
            for v in np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(p))))}


def test_region_chain(tmp_path):
    root = tmp_path / "root"
    _run(root, "synth", "--kind", "brats", "--cases", "4")
    _run(root, "plan", "902", "-c", "2d")
    _run(root, "preprocess", "902", "-c", "2d")
    _run(root, "train", "902", "unet", *TRAIN, "32", "32")
    fold = root / "results" / "Dataset902_SynthBraTS" / "unet__none__2d" / "fold_0"
    cfg = json.loads((fold / "config.json").read_text())
    assert cfg["num_classes"] == 3 and cfg["label_spec"]["regions"] == [[1, 2, 3], [2, 3], [3]]
    assert cfg["protocol"]["loss"]["name"] == "bce+soft_dice"
    log = [json.loads(line) for line in (fold / "log.jsonl").read_text().splitlines()]
    assert list(log[-1]["val_dice"]) == ["(1, 2, 3)", "(2, 3)", "(3,)"]
    val = json.loads((fold / "validation" / "summary.json").read_text())
    assert list(val["regions"]) == ["(1, 2, 3)", "(2, 3)", "(3,)"] and val["labels"] == [1, 2, 3]

    _run(root, "bench", "robustness", fold, "--noise", "0.5", "--no-jitter", "-q")   # region model under noise
    rob = json.loads((fold / "robustness.json").read_text())
    assert {c["name"] for c in rob["conditions"]} >= {"clean"} and rob["conditions"][0]["dice"] is not None

    raw = root / "raw" / "Dataset902_SynthBraTS"
    outs = {}
    for name, extra in (("mirrored", []), ("plain", ["--no-mirroring"])):
        outs[name] = tmp_path / name
        _run(root, "predict", "902", "unet", "-c", "2d", "-f", "0", "-i", raw / "imagesTr", "-o", outs[name],
             "--save-probabilities", *extra)
        _run(root, "evaluate", outs[name], raw / "labelsTr", "--metrics", "dice", "hd95")
    assert _values(outs["plain"]) <= {0, 1, 2, 3}
    probs = np.load(outs["plain"] / "brats_001.npz")
    assert probs["probabilities"].shape[0] == 3 and list(probs["regions_class_order"]) == [1, 2, 3]
    s = json.loads((outs["plain"] / "summary.json").read_text())
    assert len(s["metric_per_case"]) == 4 and set(s["region_mean"]) == {"(1, 2, 3)", "(2, 3)", "(3,)"}
    out = _run(root, "stats", outs["mirrored"], outs["plain"], "--labels", "regions", "(1, 2, 3)", "--json",
               tmp_path / "stats.json")
    rows = json.loads((tmp_path / "stats.json").read_text())
    assert "regions" in json.dumps(rows) and "(1, 2, 3)" in json.dumps(rows), out


def test_sparse_chain(tmp_path):
    root = tmp_path / "root"
    _run(root, "synth", "--kind", "sparse", "--cases", "4")
    _run(root, "plan", "904", "-c", "2d")
    fp = json.loads((root / "preprocessed" / "Dataset904_SynthSparse" / "fingerprint.json").read_text())
    assert "4" not in fp["class_voxel_counts"] and fp["ignored_voxel_count"] > 0
    _run(root, "preprocess", "904", "-c", "2d")
    _run(root, "train", "904", "unet", *TRAIN, "64", "64")   # cardiac slices are 128-224 pixels: fewer tiles
    fold = root / "results" / "Dataset904_SynthSparse" / "unet__none__2d" / "fold_0"
    cfg = json.loads((fold / "config.json").read_text())
    assert cfg["num_classes"] == 4 and cfg["label_spec"]["ignore"] == 4
    assert cfg["protocol"]["loss"]["ignore_label"] == 4
    assert json.loads((fold / "validation" / "summary.json").read_text())["ignore_label"] == 4
    raw = root / "raw" / "Dataset904_SynthSparse"
    out = tmp_path / "pred"
    _run(root, "predict", "904", "unet", "-c", "2d", "-f", "0", "-i", raw / "imagesTs", "-o", out, "--no-mirroring")
    assert _values(out) <= {0, 1, 2, 3}                                   # never the ignore value
    _run(root, "evaluate", out, raw / "labelsTs", "--metrics", "dice")     # dense references
    s = json.loads((out / "summary.json").read_text())
    assert len(s["metric_per_case"]) == 4 and s["labels"] == [1, 2, 3]
    m = s["metric_per_case"][0]["metrics"]["1"]
    n = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTs" / s["metric_per_case"][0]["reference_file"]))).size
    assert m["TP"] + m["FP"] + m["FN"] + m["TN"] == n                     # dense: every voxel scored
    _run(root, "stats", out, out, "--labels", "all")
