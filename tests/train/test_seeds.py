"""``train --seed S``: seed 0 keeps ``fold_<f>``, S > 0 writes ``fold_<f>_seed<S>``; a negative seed is refused."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from salseg.run import RunConfig
from salseg.train import TrainSettings, train
from salseg_cli.main import app

from tests.train.conftest import TINY


def test_seed_folders(tiny_root):
    exp = tiny_root / "results" / "Dataset901_Tiny" / "unet__none__2d"
    zero = train(tiny_root, TrainSettings("Tiny", "unet", **TINY))
    one = train(tiny_root, TrainSettings("Tiny", "unet", **{**TINY, "seed": 1}))
    assert (zero, one) == (exp / "fold_0", exp / "fold_0_seed1")
    cfg0, cfg1 = RunConfig.load(zero / "config.json"), RunConfig.load(one / "config.json")
    assert (cfg0.seed, cfg1.seed) == (0, 1) and cfg0.protocol_hash == cfg1.protocol_hash  # the seed is no recipe
    w0 = torch.load(zero / "checkpoint_final.pt", weights_only=True)["model"]
    w1 = torch.load(one / "checkpoint_final.pt", weights_only=True)["model"]
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)  # another seed, other weights
    res = CliRunner().invoke(app, ["--root", str(tiny_root), "train", "Tiny", "unet", "--seed", "-1", "--quiet"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert sorted(p.name for p in exp.iterdir()) == ["fold_0", "fold_0_seed1"]
