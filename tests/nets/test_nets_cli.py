"""The nets' features through the trainer and the CLI, on the tiny planned dataset of tests/train with a 4-stage
2.5d U-Net (so deep supervision is really applied): ``stack`` trained 2 iterations, predicted, run through bench
robustness and bench efficiency; slice modules trained with the backbone's deep-supervision outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from typer.testing import CliRunner

from salseg_cli.main import app
from tests.train.conftest import CASES, SHAPE, write_dataset


def _run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture
def root(tmp_path):
    root = write_dataset(tmp_path / "root")
    plans_path = root / "preprocessed" / "Dataset901_Tiny" / "plans.json"
    plans = json.loads(plans_path.read_text())
    conf = plans["configurations"]["2.5d"]  # 4 stages down to 4 x 4: outputs at 1 and 1/2 in training
    conf.update(pool_op_kernel_sizes=[[1, 1], [2, 2], [2, 2], [2, 2]], conv_kernel_sizes=[[3, 3]] * 4,
                features_per_stage=[4, 8, 16, 32])
    plans_path.write_text(json.dumps(plans))
    return root


def test_train_predict_robustness_efficiency_with_stack(root, tmp_path):
    torch.set_num_threads(1)
    _run("--root", root, "train", "Tiny", "unet", "--module", "stack", "--config", "2.5d", "--fold", "0",
         "--epochs", "1", "--iters-per-epoch", "2", "--batch-size", "2", "--width", "4", "--device", "cpu",
         "--workers", "0", "-q")
    fold = root / "results" / "Dataset901_Tiny" / "unet__stack__2.5d" / "fold_0"
    assert (fold / "checkpoint_final.pt").is_file() and (fold / "validation" / "summary.json").is_file()
    from salseg.run import RunConfig, build_model
    from salseg.run.checkpoint import load_checkpoint

    cfg = RunConfig.load(fold / "config.json")
    assert cfg.mode == "2.5d" and cfg.neighbours == 3 and cfg.module == "stack"
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(fold / "checkpoint_final.pt")["model"])
    assert model.backbone.encoder[0][0].conv.in_channels == 3  # K * C
    assert len(model.deep_supervision_scales) == 2  # trained with the backbone's deep supervision

    raw = root / "raw" / "Dataset901_Tiny"
    out = tmp_path / "pred"
    _run("--root", root, "predict", "-i", raw / "imagesTr", "-o", out, "-d", "Tiny", "-n", "unet", "-m", "stack",
         "-c", "2.5d", "-f", "0", "--device", "cpu", "-q")
    for cid in CASES:
        src = sitk.ReadImage(str(raw / "imagesTr" / f"{cid}_0000.nii.gz"))
        got = sitk.ReadImage(str(out / f"{cid}.nii.gz"))
        assert got.GetSize() == src.GetSize() and got.GetSpacing() == src.GetSpacing()
        assert sitk.GetArrayFromImage(got).shape == SHAPE
        assert set(np.unique(sitk.GetArrayFromImage(got))) <= {0, 1, 2}

    from salseg.bench.robustness import robustness

    res = robustness(fold, noise=(0.5,), jitter=False, seed=0, device="cpu")
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert res["conditions"][0]["dice"] == pytest.approx(summary["foreground_mean"]["Dice"], nan_ok=True)

    eff = tmp_path / "eff.json"
    _run("bench", "efficiency", "-n", "unet", "-m", "none", "stack", "-c", "2", "-s", "16", "-r", "1", "--threads",
         "1", "-o", "width=2", "--json", eff)
    recs = {r["module"]: r for r in json.loads(eff.read_text())}
    assert recs["stack"]["skipped"] is None and recs["stack"]["params"] - recs["none"]["params"] == 2 * 2 * 9


@pytest.mark.parametrize("position", ["head", "skip"])
def test_trainer_trains_a_slice_module_with_deep_supervision(root, position, monkeypatch):
    # the trainer's loss receives the model's list of outputs (full resolution and 1/2) in every training step
    from salseg.train import TrainSettings, train
    from salseg.train.losses import DeepSupervisionLoss

    seen = []
    forward = DeepSupervisionLoss.forward
    monkeypatch.setattr(DeepSupervisionLoss, "forward",
                        lambda self, outputs, target: seen.append([o.shape[-1] for o in outputs]) or
                        forward(self, outputs, target))
    torch.set_num_threads(1)
    out = train(root, TrainSettings("Tiny", "unet", "salstm", config="2.5d", fold=0, position=position, epochs=1,
                                    iters_per_epoch=2, batch_size=2, width=4, device="cpu", workers=0, seed=0,
                                    options={"features": 4}))
    assert seen == [[32, 16], [32, 16]]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert np.isfinite(log[-1]["train_loss"])
