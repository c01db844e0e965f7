"""Deep supervision as a run option: applied where the network has auxiliary outputs, recorded as applied, and
config.json files written before the field existed still rebuild their model."""

from __future__ import annotations

import dataclasses
import json

import torch
from torch import nn
from typer.testing import CliRunner

from salseg.run import RunConfig, build_model
from salseg.train import TrainSettings, train
from salseg.train.resolve import finish_model_config
from salseg_cli.main import app

from tests.train.conftest import TINY


def four_stages(root) -> None:
    """The tiny plans with a 4-stage U-Net (3 stages have no deep-supervision output besides the full one)."""
    path = root / "preprocessed" / "Dataset901_Tiny" / "plans.json"
    plans = json.loads(path.read_text())
    for name in ("2d", "2.5d"):
        conf = plans["configurations"][name]
        conf["pool_op_kernel_sizes"] = [[1, 1], [2, 2], [2, 2], [2, 2]]
        conf["conv_kernel_sizes"] = [[3, 3]] * 4
        conf["features_per_stage"] = [8, 16, 32, 64]
    path.write_text(json.dumps(plans))


def _outputs_in_training(cfg: RunConfig) -> int:
    model = build_model(cfg).train()
    out = model(torch.zeros(1, cfg.in_channels, *cfg.patch_size))
    return len(out) if isinstance(out, (list, tuple)) else 1


def test_deep_supervision_on_off_recorded_as_applied(tiny_root):
    four_stages(tiny_root)
    on = train(tiny_root, TrainSettings("Tiny", "unet", **TINY))
    cfg_on = RunConfig.load(on / "config.json")
    assert json.loads((on / "config.json").read_text())["deep_supervision"] is True
    assert _outputs_in_training(cfg_on) == 2  # full and 1/2 resolution
    res = CliRunner().invoke(app, ["--root", str(tiny_root), "train", "Tiny", "unet", "--fold", "1", "--device",
                                   "cpu", "--epochs", "1", "--iters-per-epoch", "1", "--batch-size", "2",
                                   "--width", "4", "--quiet", "--no-deep-supervision"])
    assert res.exit_code == 0, res.output
    off = RunConfig.load(tiny_root / "results" / "Dataset901_Tiny" / "unet__none__2d" / "fold_1" / "config.json")
    assert off.deep_supervision is False and _outputs_in_training(off) == 1
    # a config.json from before the field: rebuilt as it was trained (plain network: with deep supervision)
    data = json.loads((on / "config.json").read_text())
    del data["deep_supervision"]
    legacy = RunConfig.from_dict(data)
    assert legacy.deep_supervision is True
    build_model(legacy).load_state_dict(torch.load(on / "checkpoint_final.pt", weights_only=True)["model"])
    assert RunConfig.from_dict({**data, "module": "lstmsa"}).deep_supervision is False  # slice backbones had none


def test_three_stage_unet_and_networks_without_outputs_record_false(tiny_root):
    out = train(tiny_root, TrainSettings("Tiny", "unet", **TINY))  # 3 stages: only the full-resolution output exists
    assert RunConfig.load(out / "config.json").deep_supervision is False
    cfg = dataclasses.replace(RunConfig.load(out / "config.json"), deep_supervision=True)
    cfg = finish_model_config(cfg, nn.Conv2d(1, 3, 1))  # no deep_supervision_scales: no auxiliary outputs
    assert cfg.deep_supervision is False
