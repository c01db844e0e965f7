"""``train --module-position``: result folder ``<module>@<position>``, position in config.json and the checkpoint,
and ``--continue`` refusing a checkpoint trained with another position."""

from __future__ import annotations

import shutil

import pytest
import torch

from salseg.errors import ConfigError
from salseg.run import RunConfig, build_model
from salseg.train import TrainSettings, train
from salseg.run.checkpoint import load_checkpoint

from tests.train.conftest import TINY


def test_bottleneck_position_trains_records_and_refuses_another(tiny_root):
    torch.set_num_threads(1)
    out = train(tiny_root, TrainSettings("Tiny", "unet", "salstm", config="2.5d", fold=0, position="bottleneck",
                                         **{**TINY, "val_every": 1}, options={"features": 4}, keep_latest=True))
    assert out.parent.name == "unet__salstm@bottleneck__2.5d"
    cfg = RunConfig.load(out / "config.json")
    assert cfg.position == "bottleneck" and cfg.mode == "2.5d"
    ckpt = load_checkpoint(out / "checkpoint_final.pt")
    assert ckpt["config"]["position"] == "bottleneck"
    model = build_model(cfg)
    assert model.position == "bottleneck"
    model.load_state_dict(ckpt["model"])  # the recorded position rebuilds the trained model exactly
    # a folder copied under another position's name: --continue refuses it with the reason
    other = tiny_root / "results" / "Dataset901_Tiny" / "unet__salstm@skip__2.5d" / "fold_0"
    shutil.copytree(out, other)
    with pytest.raises(ConfigError, match="trained with module position 'bottleneck'.*'skip'"):
        train(tiny_root, TrainSettings("Tiny", "unet", "salstm", config="2.5d", fold=0, position="skip", **TINY,
                                       options={"features": 4}), resume=True)
    # the predictor's loading path refuses it too, and loads the right position
    from salseg.infer.predictor import Predictor

    with pytest.raises(ConfigError, match=r"config\.json: this checkpoint was trained with module position "
                                          r"'bottleneck'.*'skip'"):
        Predictor.from_results(tiny_root, "Tiny", "unet", "salstm", "2.5d", position="skip")
    predictor = Predictor.from_results(tiny_root, "Tiny", "unet", "salstm", "2.5d", position="bottleneck")
    assert predictor.model.position == "bottleneck"


def test_bench_grid_runs_slice_modules_once_per_position(tiny_root):
    from salseg.bench.grid import Combination, _train_one, plan_grid

    combos, invalid = plan_grid(["unet"], ["none", "salstm", "reca"], [0], "2.5d", ["head", "skip"])
    assert [(c.module, c.position) for c in combos] == [("none", None), ("salstm", None), ("salstm", "skip")]
    assert [i["module"] for i in invalid] == ["reca"]
    with pytest.raises(ConfigError, match="unknown module position 'top'"):
        plan_grid(["unet"], ["salstm"], [0], "2.5d", ["top"])
    torch.set_num_threads(1)
    out = _train_one(str(tiny_root), "Dataset901_Tiny", Combination("unet", "salstm", "2.5d", 0, "skip"),
                     TrainSettings(**TINY, options={"features": 4}))
    assert out.endswith("unet__salstm@skip__2.5d/fold_0")
    assert RunConfig.load(f"{out}/config.json").position == "skip"
