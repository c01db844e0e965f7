"""Seed folders (``fold_<f>_seed<S>``) as prediction sources: listed, chosen with ``-f 0_seed<S>``, refused clearly."""

from __future__ import annotations

import json
import shutil

import torch
from typer.testing import CliRunner

from salseg import results
from salseg.infer.predictor import Predictor
from salseg.run.folds import parse_fold_spec, trained_folds

DATASET = "Dataset901_InferToy"  # as in conftest.py


def _seed_folder(root, src_fold: int, fold: int, seed: int):
    exp = results.experiment_dir(root, DATASET, "unet", "none", "3d_fullres")
    dst = exp / results.fold_name(fold, seed)
    shutil.copytree(exp / results.fold_name(src_fold), dst)
    cfg = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**cfg, "fold": fold, "seed": seed}))
    return exp, dst


def test_fold_specs():
    assert parse_fold_spec("0") == (0, 0) and parse_fold_spec("all") == ("all", 0)
    assert parse_fold_spec("0_seed2") == (0, 2) == parse_fold_spec("fold_0_seed2")
    assert parse_fold_spec("all_seed1") == ("all", 1)
    for bad in ("0_seed0", "0_seedx", "seed1", "x", "0_seed"):
        assert parse_fold_spec(bad) is None, bad


def test_seed_folder_listed_predicted_and_refused(toy_root, tmp_path):
    exp, dst = _seed_folder(toy_root, 1, 0, 2)
    (exp / "fold_9_seed0").mkdir()  # not a fold folder name (seed 0 is fold_9): ignored
    assert trained_folds(exp) == ["0", "0_seed2", "1"]
    pred = Predictor.from_results(toy_root, DATASET, "unet", "none", "3d_fullres", ["0_seed2"], device="cpu")
    assert pred.fold_names == ["0_seed2"]
    want = torch.load(dst / "checkpoint_final.pt", weights_only=True)["model"]
    assert all(torch.equal(want[k], v) for k, v in pred.state_dicts[0].items())
    assert Predictor.from_results(toy_root, DATASET, "unet", "none", "3d_fullres", None).fold_names == \
        ["0", "0_seed2", "1"]

    from salseg_cli.main import app
    images = results.raw_dir(toy_root, DATASET) / "imagesTs"
    base = ["--root", str(toy_root), "predict", "-d", DATASET, "-n", "unet", "-c", "3d_fullres", "--device", "cpu",
            "-q", "-i", str(images)]
    res = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "a"), "-f", "0", "fold_0_seed2", "--no-mirroring"])
    assert res.exit_code == 0, res.output
    assert "folds 0, 0_seed2" in " ".join(res.output.split())
    for spec, msg in (("0_seedx", "seed folders such as 0_seed1"), ("0_seed5", "fold 0_seed5 not found")):
        res = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "b"), "-f", spec])
        flat = " ".join(res.output.split())
        assert res.exit_code == 2 and msg in flat and "Traceback" not in flat, res.output
        assert not (tmp_path / "b").exists()
