"""`salseg bench robustness`: the clean condition reproduces validation/summary.json, perturbations are the seeded
draws they claim to be (checked against direct numpy), drops are clean minus perturbed, bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from salseg.bench.robustness import JITTER, add_noise, conditions, jitter, robustness
from salseg.errors import SalsegError
from salseg.train import TrainSettings, train
from salseg_cli.main import app

from tests.bench.test_bench_run import NAME, make_tiny_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    ds = make_tiny_dataset(root)
    out = train(root, TrainSettings(NAME, "unet", config="2d", fold=0, epochs=1, iters_per_epoch=4, batch_size=4,
                                    width=4, device="cpu", workers=0, seed=0, lr=0.05))
    return root, ds, out


def test_clean_equals_validation_and_drops(fold):
    root, ds, out = fold
    res = robustness(out, noise=(0.5, 3.0), jitter=True, seed=3, device="cpu")
    assert [c["name"] for c in res["conditions"]] == ["clean", "noise_0.5", "noise_3", "jitter"]
    saved = json.loads((out / "robustness.json").read_text())
    assert saved["conditions"] == json.loads(json.dumps(res["conditions"]))
    summary = json.loads((out / "validation" / "summary.json").read_text())
    clean = res["conditions"][0]
    # the clean re-prediction is the training's validation export, scored the same way
    assert clean["n_cases"] == len(summary["metric_per_case"]) == 2
    assert clean["dice"] == pytest.approx(summary["foreground_mean"]["Dice"], nan_ok=True)
    assert clean["hd95"] == pytest.approx(summary["foreground_mean"]["HD95"], nan_ok=True)
    for lab in ("1", "2"):
        assert clean["dice_per_label"][lab] == pytest.approx(summary["mean"][lab]["Dice"], nan_ok=True)
    for c in res["conditions"]:
        assert c["dice_drop"] == pytest.approx(clean["dice"] - c["dice"])
        if c["hd95"] is not None and clean["hd95"] is not None:
            assert c["hd95_increase"] == pytest.approx(c["hd95"] - clean["hd95"])
    assert clean["dice_drop"] == 0
    # per-case entries for every validation case and condition; jitter parameters recorded within their ranges
    splits = json.loads((root / "preprocessed" / ds / "splits.json").read_text())
    assert set(res["per_case"]) == set(splits[0]["val"])
    assert all(set(v) == {"clean", "noise_0.5", "noise_3", "jitter"} for v in res["per_case"].values())
    for cid, p in res["jitter_params"].items():
        for ch in p["jitter"]:
            for k, (lo, hi) in JITTER.items():
                assert lo <= ch[k] <= hi


def test_perturbations_against_numpy():
    data = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    noisy = add_noise(data, 0.5, np.random.default_rng([1, 2, 3]))
    assert np.allclose(noisy - data, np.random.default_rng([1, 2, 3]).normal(0, 0.5, data.shape), atol=1e-6)
    out, params = jitter(data, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    for ch, p in enumerate(params):
        c, b, g = (rng.uniform(*JITTER[k]) for k in ("contrast", "brightness", "gamma"))
        assert (p["contrast"], p["brightness"], p["gamma"]) == (c, b, g)
        x = data[ch].astype(np.float64)
        x = (x - x.mean()) * c + x.mean() + b * x.std()
        ref = ((x - x.min()) / np.ptp(x)) ** g * np.ptp(x) + x.min()
        assert np.allclose(out[ch], ref, atol=1e-5)
    assert params[0] != params[1]  # colour jitter: independent draws per channel


def test_bad_input_and_cli(fold, tmp_path):
    root, ds, out = fold
    with pytest.raises(SalsegError, match="positive"):
        conditions([-0.1], True)
    with pytest.raises(SalsegError, match="not found"):
        robustness(tmp_path / "missing")
    with pytest.raises(SalsegError, match="neither a trained fold"):
        robustness(tmp_path)
    res = CliRunner().invoke(app, ["bench", "robustness", str(out.parent), "--noise", "0.5", "1", "--no-jitter",
                                   "--no-mirroring", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    saved = json.loads((out.parent / "robustness.json").read_text())  # experiment folder: its folds pooled
    assert [c["name"] for c in saved["conditions"]] == ["clean", "noise_0.5", "noise_1"] and saved["folds"] == ["0"]
    assert "noise_0.5" in res.output and "Dice drop" in res.output
    res = CliRunner().invoke(app, ["bench", "robustness", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "Traceback" not in res.output and "not found" in res.output
