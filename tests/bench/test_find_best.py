"""``find-best`` on a tiny synthetic grid: 2 arms x 5 folds (a few iterations, tiny networks): both files, a
consistent winner, the exact predict command — and that command runs."""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
from typer.testing import CliRunner

from salseg.train import TrainSettings, train
from salseg_cli.main import app

from tests.train.conftest import TINY, write_dataset

ARMS = [("unet", "none", "2d"), ("unet", "stack", "2.5d")]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("fb") / "root")
    for network, module, config in ARMS:
        for fold in range(5):
            train(root, TrainSettings("Tiny", network, module, config=config, fold=fold, save_probabilities=True,
                                      **{**TINY, "iters_per_epoch": 1}))
    return root


def _cli(root, *args):
    r = CliRunner().invoke(app, ["--root", str(root), *args])
    return r.exit_code, r.output + (r.stderr if r.stderr_bytes else "")


def test_find_best_writes_both_files_and_a_runnable_command(grid, tmp_path):
    code, text = _cli(grid, "find-best", "Tiny", "-q")
    assert code == 0, text
    out = grid / "results" / "Dataset901_Tiny" / "find_best"
    result = json.loads((out / "find_best.json").read_text())
    names = [c["name"] for c in result["candidates"]]
    assert sorted(names) == sorted(["unet__none__2d", "unet__stack__2.5d", "unet__none__2d+unet__stack__2.5d"])
    dice = [c["dice"] for c in result["candidates"]]
    assert dice == sorted(dice, reverse=True) and result["winner"] == names[0]   # ranked by CV Dice
    for c in result["candidates"]:  # each Dice is the candidate's own summary.json over the 5 validation cases
        summary = json.loads((out / "candidates" / c["name"] / "summary.json").read_text())
        assert len(summary["metric_per_case"]) == 5
        assert c["dice"] == pytest.approx(summary["foreground_mean"]["Dice"])
        pp = json.loads((out / "candidates" / c["name"] / "postprocessing.json").read_text())
        assert set(pp["per_class"]) == {"1", "2"}
    v = result["verdict"]
    assert v["method"] == result["winner"] and v["reference"] == result["runner_up"]
    assert v["verdict"] in ("better", "not separable") and result["chosen"] == v["recommended"]
    if v["verdict"] == "not separable":
        cost = v["cost"]
        assert min(cost, key=lambda n: (cost[n]["latency_ms"], cost[n]["params"])) == result["chosen"]
    md = (out / "inference_instructions.md").read_text()
    command = result["predict_command"]
    assert command in md and command in text
    # the command runs (on the training images; output outside the raw dataset)
    args = shlex.split(command.replace("INPUT_FOLDER", str(grid / "raw" / "Dataset901_Tiny" / "imagesTr"))
                       .replace("OUTPUT_FOLDER", str(tmp_path / "pred")))
    assert args[:3] == ["salseg", "--root", str(grid)]
    r = CliRunner().invoke(app, args[1:] + ["--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "pred").glob("*.nii.gz"))) == 5


def test_partial_cross_validation_is_refused_naming_it(grid):
    import shutil

    fold = grid / "results" / "Dataset901_Tiny" / "unet__none__2d" / "fold_3"
    backup = fold.with_name("backup_fold_3")
    shutil.move(fold, backup)
    try:
        code, text = _cli(grid, "find-best", "Tiny", "-q", "-o", str(grid / "fb2"))
        assert code == 2 and "unet__none__2d" in text and "fold_3" in text
        assert not (grid / "fb2" / "find_best.json").exists()
        code, text = _cli(grid, "find-best", "Tiny", "-q", "-o", str(grid / "fb3"), "--arms", "unet__stack__2.5d")
        assert code == 0, text
        assert json.loads((grid / "fb3" / "find_best.json").read_text())["chosen"] == "unet__stack__2.5d"
    finally:
        shutil.move(backup, fold)


def test_predict_of_two_models_equals_ensemble_of_their_probabilities(grid, tmp_path):
    images = str(grid / "raw" / "Dataset901_Tiny" / "imagesTr")
    base = ["predict", "Tiny", "unet", "-f", "0", "--device", "cpu", "-q", "--no-mirroring", "-i", images]
    assert _cli(grid, *base, "-c", "2d", "-o", str(tmp_path / "a"), "--save-probabilities")[0] == 0
    assert _cli(grid, *base, "-m", "stack", "-c", "2.5d", "-o", str(tmp_path / "b"), "--save-probabilities")[0] == 0
    code, text = _cli(grid, *base, "-c", "2d", "--ensemble-models", "unet:stack:2.5d", "-o", str(tmp_path / "ab"),
                      "--save-probabilities")
    assert code == 0, text
    for case in ("tiny_000", "tiny_003"):
        pa, pb, pab = (np.load(tmp_path / d / f"{case}.npz")["probabilities"] for d in ("a", "b", "ab"))
        np.testing.assert_allclose(pab, (pa + pb) / 2, atol=1e-5)


def test_recipe_warning_names_the_differing_fields_but_not_the_configuration():
    from types import SimpleNamespace

    from salseg.bench.find_best import Arm, recipe_warnings

    def arm(name, config, **proto):
        base = {"config": config, "patch_size": [32, 32] if config == "2d" else [8, 32, 32], "epochs": 10, "lr": 0.01}
        return Arm(name, "unet", "none", config, [], SimpleNamespace(protocol={**base, **proto}), True)

    assert recipe_warnings([arm("a", "2d"), arm("b", "3d_fullres")]) == []
    (w,) = recipe_warnings([arm("a", "2d"), arm("b", "3d_fullres", epochs=50)])
    assert "epochs" in w and "a=10" in w and "b=50" in w and "patch_size" not in w
