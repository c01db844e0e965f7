"""``train --save-probabilities`` keeps the final validation's softmax maps; ``validate`` re-runs a finished fold's
validation and reproduces the training's own validation/summary.json."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from salseg.run import RunConfig
from salseg.train import TrainSettings, train
from salseg_cli.main import app

from tests.train.conftest import TINY


def _per_case(summary: dict) -> dict:
    return {c["prediction_file"].rsplit("/", 1)[-1]: c["metrics"] for c in summary["metric_per_case"]}


def test_validate_reproduces_training_validation_and_saves_probabilities(tiny_root):
    out = train(tiny_root, TrainSettings("Tiny", "unet", config="2d", fold=0, save_probabilities=True, **TINY))
    assert RunConfig.load(out / "config.json").save_probabilities is True
    val = out / "validation"
    (case,) = [p.name[:-4] for p in val.glob("*.npz")]
    with np.load(val / f"{case}.npz") as f:
        probs = f["probabilities"]
        assert list(f["label_values"]) == [0, 1, 2]
    assert probs.shape == (3, 8, 32, 32) and np.allclose(probs.sum(0), 1, atol=1e-5)
    geometry = json.loads((val / f"{case}.json").read_text())["original"]
    assert geometry["origin"] == [5.0, -3.0, 1.5]
    before = json.loads((val / "summary.json").read_text())

    r = CliRunner().invoke(app, ["--root", str(tiny_root), "validate", "Tiny", "unet", "-c", "2d", "-f", "0",
                                 "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    after = json.loads((val / "summary.json").read_text())
    assert _per_case(after) == _per_case(before)
    assert after["foreground_mean"] == before["foreground_mean"]

    r = CliRunner().invoke(app, ["--root", str(tiny_root), "validate", "Tiny", "unet", "-c", "2d", "-f", "3",
                                 "--device", "cpu", "-q"])
    assert r.exit_code == 2 and "fold_3" in r.output and "trained folds: 0" in r.output
